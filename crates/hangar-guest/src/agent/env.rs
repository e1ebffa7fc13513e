//! The environment and working directory commands start with.

use std::path::{Path, PathBuf};

use crate::protocol::{ErrorCode, CREDENTIAL_ENV_DIR, MAX_ENV_FILE_BYTES};

/// `PATH` given to every command unless the request overrides it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `TERM` given to PTY commands unless the request overrides it.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// Where the agent reads user names and home directories (no NSS: the binary is static).
const PASSWD_PATH: &str = "/etc/passwd";

/// The fields of one `/etc/passwd` line the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub home: String,
}

/// Finds `uid` in the text of an `/etc/passwd` file (`name:pw:uid:gid:gecos:home:shell`).
/// Malformed lines and comments are skipped.
pub(crate) fn lookup_uid(passwd: &str, uid: u32) -> Option<PasswdEntry> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[0].is_empty() || fields[0].starts_with('#') {
            return None;
        }
        if fields[2].parse::<u32>().ok()? != uid {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0].to_owned(),
            home: fields[5].to_owned(),
        })
    })
}

/// The agent user's passwd entry, read from `/etc/passwd` now (so users added to the image
/// after start are seen).
pub(crate) fn current_user() -> Option<PasswdEntry> {
    let text = std::fs::read_to_string(PASSWD_PATH).ok()?;
    lookup_uid(&text, nix::unistd::getuid().as_raw())
}

/// Default environment merged with the request's overrides (an override replaces a default of
/// the same name; later overrides win).
///
/// Errors: `InvalidRequest` for a name that is empty or contains `=` or NUL.
pub(crate) fn command_env(
    user: Option<&PasswdEntry>,
    overrides: &[(String, String)],
    tty: bool,
) -> Result<Vec<(String, String)>, (ErrorCode, String)> {
    let home = user
        .map(|u| u.home.as_str())
        .filter(|h| !h.is_empty())
        .unwrap_or("/");
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), home.into()),
        ("LANG".into(), "C.UTF-8".into()),
    ];
    let name = match user {
        Some(u) => Some(u.name.clone()),
        None if nix::unistd::getuid().is_root() => Some("root".into()),
        None => None,
    };
    if let Some(name) = name {
        env.push(("USER".into(), name.clone()));
        env.push(("LOGNAME".into(), name));
    }
    if tty {
        env.push(("TERM".into(), DEFAULT_TERM.into()));
    }
    for (key, value) in credential_env(Path::new(home)) {
        set(&mut env, key, value);
    }
    for (key, value) in overrides {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err((
                ErrorCode::InvalidRequest,
                format!("invalid environment variable name {key:?}"),
            ));
        }
        set(&mut env, key.clone(), value.clone());
    }
    Ok(env)
}

fn set(env: &mut Vec<(String, String)>, key: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key, value)),
    }
}

/// The variables of every `*.env` file in `home`/[`CREDENTIAL_ENV_DIR`], in file-name order
/// (later files win). Unreadable or oversized files and malformed lines are skipped: a
/// broken credential file must not stop commands from starting.
pub(crate) fn credential_env(home: &Path) -> Vec<(String, String)> {
    let dir = home.join(CREDENTIAL_ENV_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "env"))
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_ENV_FILE_BYTES)
        })
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| parse_env_file(&text))
        .collect()
}

/// `NAME=value` lines; blank lines and `#` comments skipped, names must be non-empty and
/// free of `=`, whitespace and NUL, values free of NUL. No quoting or expansion.
pub(crate) fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| {
            !k.is_empty()
                && !k.contains(|c: char| c.is_whitespace() || c == '\0')
                && !v.contains('\0')
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The value of `key` in an environment list.
pub(crate) fn get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The working directory: the requested one (which must be an existing directory), else
/// `HOME` when it is a directory, else `/`.
///
/// Errors: `NotFound` for a requested directory that does not exist, `InvalidRequest` for a
/// relative one.
pub(crate) fn resolve_cwd(
    requested: Option<&str>,
    env: &[(String, String)],
) -> Result<PathBuf, (ErrorCode, String)> {
    match requested {
        Some(dir) => {
            let path = Path::new(dir);
            if !path.is_absolute() {
                return Err((
                    ErrorCode::InvalidRequest,
                    format!("cwd {dir:?} is not absolute"),
                ));
            }
            if !path.is_dir() {
                return Err((ErrorCode::NotFound, format!("cwd {dir}: no such directory")));
            }
            Ok(path.to_path_buf())
        }
        None => Ok(get(env, "HOME")
            .map(Path::new)
            .filter(|h| h.is_absolute() && h.is_dir())
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment:x:5:5::/nope:/bin/sh
broken line
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
dev:x:1000:1000:Dev,,,:/home/dev:/bin/zsh
";

    #[test]
    fn passwd_lookup_by_uid() {
        assert_eq!(
            lookup_uid(PASSWD, 1000),
            Some(PasswdEntry {
                name: "dev".into(),
                home: "/home/dev".into()
            })
        );
        assert_eq!(lookup_uid(PASSWD, 0).map(|e| e.home), Some("/root".into()));
        assert_eq!(lookup_uid(PASSWD, 5), None);
        assert_eq!(lookup_uid(PASSWD, 42), None);
        assert_eq!(lookup_uid("", 0), None);
    }

    #[test]
    fn env_defaults_and_overrides() {
        let user = PasswdEntry {
            name: "dev".into(),
            home: "/home/dev".into(),
        };
        let env = command_env(
            Some(&user),
            &[("PATH".into(), "/x".into()), ("FOO".into(), "1".into())],
            true,
        )
        .expect("valid env");
        assert_eq!(get(&env, "PATH"), Some("/x"));
        assert_eq!(get(&env, "HOME"), Some("/home/dev"));
        assert_eq!(get(&env, "USER"), Some("dev"));
        assert_eq!(get(&env, "LANG"), Some("C.UTF-8"));
        assert_eq!(get(&env, "TERM"), Some(DEFAULT_TERM));
        assert_eq!(get(&env, "FOO"), Some("1"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);

        let env = command_env(None, &[], false).expect("valid env");
        assert_eq!(get(&env, "HOME"), Some("/"));
        assert_eq!(get(&env, "PATH"), Some(DEFAULT_PATH));
        assert_eq!(get(&env, "TERM"), None);
    }

    #[test]
    fn env_files_parse_strictly() {
        let text =
            "# comment\n\nA=1\nB=x=y\r\n=nope\nBAD NAME=2\nno-equals\n  # indented comment\nC=\n";
        assert_eq!(
            parse_env_file(text),
            vec![
                ("A".to_owned(), "1".to_owned()),
                ("B".to_owned(), "x=y".to_owned()),
                ("C".to_owned(), String::new()),
            ]
        );
    }

    #[test]
    fn credential_env_files_sit_between_defaults_and_overrides() {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = home.path().join(CREDENTIAL_ENV_DIR);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("b.env"), "TOKEN=from-b\nONLY_B=1\n").expect("write");
        std::fs::write(dir.join("a.env"), "TOKEN=from-a\nLANG=xx\n").expect("write");
        std::fs::write(dir.join("c.txt"), "IGNORED=1\n").expect("write");
        let big = "X=".to_owned() + &"y".repeat(usize::try_from(MAX_ENV_FILE_BYTES).unwrap_or(0));
        std::fs::write(dir.join("d.env"), big).expect("write");
        let user = PasswdEntry {
            name: "dev".into(),
            home: home.path().to_string_lossy().into_owned(),
        };
        let env =
            command_env(Some(&user), &[("ONLY_B".into(), "req".into())], false).expect("valid env");
        // Later files win over earlier ones and over defaults; the request wins over all.
        assert_eq!(get(&env, "TOKEN"), Some("from-b"));
        assert_eq!(get(&env, "LANG"), Some("xx"));
        assert_eq!(get(&env, "ONLY_B"), Some("req"));
        assert_eq!(get(&env, "IGNORED"), None);
        assert_eq!(get(&env, "X"), None, "oversized files are skipped");
        // No directory, no variables.
        assert!(credential_env(Path::new("/definitely/not/here")).is_empty());
    }

    #[test]
    fn bad_env_names_are_refused() {
        for bad in ["", "A=B", "A\0"] {
            let r = command_env(None, &[(bad.into(), "v".into())], false);
            assert!(matches!(r, Err((ErrorCode::InvalidRequest, _))), "{bad:?}");
        }
    }

    #[test]
    fn cwd_resolution() {
        let env = vec![("HOME".to_string(), "/definitely/not/here".to_string())];
        assert_eq!(resolve_cwd(None, &env), Ok(PathBuf::from("/")));
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_string_lossy().into_owned();
        let env = vec![("HOME".to_string(), home.clone())];
        assert_eq!(resolve_cwd(None, &env), Ok(dir.path().to_path_buf()));
        assert_eq!(resolve_cwd(Some("/"), &env), Ok(PathBuf::from("/")));
        assert!(matches!(
            resolve_cwd(Some("/definitely/not/here"), &env),
            Err((ErrorCode::NotFound, _))
        ));
        assert!(matches!(
            resolve_cwd(Some("rel"), &env),
            Err((ErrorCode::InvalidRequest, _))
        ));
    }
}
