//! The environment and working directory commands start with.

use std::path::{Path, PathBuf};

use crate::protocol::ErrorCode;

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
    for (key, value) in overrides {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err((
                ErrorCode::InvalidRequest,
                format!("invalid environment variable name {key:?}"),
            ));
        }
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1.clone_from(value),
            None => env.push((key.clone(), value.clone())),
        }
    }
    Ok(env)
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
