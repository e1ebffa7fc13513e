//! Which Debian mirror `debootstrap` uses: the one the host's apt already uses.

use std::path::Path;

/// Environment variable that overrides every other choice of Debian mirror.
pub const MIRROR_ENV: &str = "HANGAR_DEBIAN_MIRROR";

/// The Debian mirror for `suite`, in this order: `$HANGAR_DEBIAN_MIRROR`; the recipe's
/// `mirror`; the first `deb` source of the host's apt configuration that carries `suite`
/// (`/etc/apt/sources.list.d/*.sources` in deb822 form, then `*.list` there and
/// `/etc/apt/sources.list` in one-line form). `None` when none of them names one: hangar
/// does not guess a mirror.
pub fn debian_mirror(suite: &str, recipe_mirror: Option<&str>) -> Option<String> {
    if let Some(m) = std::env::var(MIRROR_ENV)
        .ok()
        .filter(|m| !m.trim().is_empty())
    {
        return Some(m.trim().to_owned());
    }
    if let Some(m) = recipe_mirror {
        return Some(m.to_owned());
    }
    host_apt_mirror(Path::new("/etc/apt"), suite)
}

/// The first matching source under an apt configuration directory (normally `/etc/apt`).
pub(crate) fn host_apt_mirror(apt_dir: &Path, suite: &str) -> Option<String> {
    let mut files: Vec<_> = std::fs::read_dir(apt_dir.join("sources.list.d"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let deb822 = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "sources"));
    for path in deb822 {
        if let Some(uri) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| from_deb822(&t, suite))
        {
            return Some(uri);
        }
    }
    let one_line = std::iter::once(apt_dir.join("sources.list")).chain(
        files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "list"))
            .cloned(),
    );
    for path in one_line {
        if let Some(uri) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| from_one_line(&t, suite))
        {
            return Some(uri);
        }
    }
    None
}

fn usable_uri(uri: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|p| uri.starts_with(p))
}

/// The first URI of a deb822 stanza with type `deb`, the suite, and not disabled.
pub(crate) fn from_deb822(text: &str, suite: &str) -> Option<String> {
    let mut stanzas: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            stanzas.push(Vec::new());
            continue;
        }
        if line.trim_start().starts_with('#') {
            continue;
        }
        let stanza = stanzas.last_mut()?;
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = stanza.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(':') {
            stanza.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    for stanza in stanzas {
        let field = |k: &str| {
            stanza
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let has =
            |k: &str, word: &str| field(k).is_some_and(|v| v.split_whitespace().any(|w| w == word));
        if !has("types", "deb")
            || !has("suites", suite)
            || field("enabled").is_some_and(|v| v == "no")
        {
            continue;
        }
        if let Some(uri) = field("uris").and_then(|v| v.split_whitespace().find(|u| usable_uri(u)))
        {
            return Some(uri.trim_end_matches('/').to_owned());
        }
    }
    None
}

/// The URI of the first `deb [options] URI SUITE COMPONENTS...` line for the suite.
pub(crate) fn from_one_line(text: &str, suite: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line
            .strip_prefix("deb ")
            .or_else(|| line.strip_prefix("deb\t"))
        else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            let Some(end) = rest.find(']') else { continue };
            rest = rest[end + 1..].trim_start();
        }
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(s)) = (words.next(), words.next()) else {
            continue;
        };
        if s == suite && usable_uri(uri) {
            return Some(uri.trim_end_matches('/').to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCES: &str = "\
Types: deb
# a comment
URIs: http://snapshot.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
";

    #[test]
    fn deb822_picks_the_suite() {
        assert_eq!(
            from_deb822(SOURCES, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            from_deb822(SOURCES, "bookworm-security").as_deref(),
            Some("http://snapshot.example/debian-security")
        );
        assert_eq!(from_deb822(SOURCES, "trixie"), None);
        let disabled = SOURCES.replace("Types: deb-src deb", "Types: deb\nEnabled: no");
        assert_eq!(from_deb822(&disabled, "bookworm"), None);
    }

    #[test]
    fn one_line_form() {
        let text = "# deb http://old.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb [signed-by=/k.gpg arch=amd64] https://m.example/debian/ bookworm main contrib\n";
        assert_eq!(
            from_one_line(text, "bookworm").as_deref(),
            Some("https://m.example/debian")
        );
        assert_eq!(from_one_line(text, "bullseye"), None);
    }

    #[test]
    fn host_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sources.list.d")).expect("mkdir");
        std::fs::write(dir.path().join("sources.list.d/debian.sources"), SOURCES).expect("write");
        std::fs::write(
            dir.path().join("sources.list"),
            "deb http://line.example/debian trixie main\n",
        )
        .expect("write");
        assert_eq!(
            host_apt_mirror(dir.path(), "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            host_apt_mirror(dir.path(), "trixie").as_deref(),
            Some("http://line.example/debian")
        );
        assert_eq!(host_apt_mirror(dir.path(), "sid"), None);
    }
}
