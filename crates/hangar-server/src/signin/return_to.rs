//! Where a person goes after signing in: only a path on hangar itself, so a sign-in link can
//! never send anyone elsewhere (no open redirector: RFC 9700 section 4.11, RFC 6749 section
//! 10.15).

/// Where people land when no `return_to` is given: the sign-in page, which then says who is
/// signed in.
pub const DEFAULT_RETURN_TO: &str = "/";
/// Longest accepted `return_to`, in bytes.
pub const MAX_RETURN_TO: usize = 2048;

/// Why a `return_to` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("return_to must be a path on this site, like /api/v1/account")]
pub struct BadReturnTo;

/// Checks `return_to`: `None` or empty gives [`DEFAULT_RETURN_TO`]; otherwise it must be an
/// absolute path of this origin: start with one `/` (not `//`, which is another host, nor
/// `/\`, which browsers read as `//`), contain no backslash, control character or space, and
/// be at most [`MAX_RETURN_TO`] bytes. Absolute URLs (`https://evil.test`) are refused, even
/// for hangar's own origin, so the check never depends on the host a request used.
pub fn check_return_to(return_to: Option<&str>) -> Result<String, BadReturnTo> {
    let Some(path) = return_to.filter(|p| !p.is_empty()) else {
        return Ok(DEFAULT_RETURN_TO.to_owned());
    };
    let ok = path.len() <= MAX_RETURN_TO
        && path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace());
    if !ok {
        return Err(BadReturnTo);
    }
    // The parser must agree: joined to a placeholder origin, the path stays on it.
    let base = openidconnect::url::Url::parse("http://hangar.invalid/").map_err(|_| BadReturnTo)?;
    let joined = base.join(path).map_err(|_| BadReturnTo)?;
    if joined.origin() != base.origin() {
        return Err(BadReturnTo);
    }
    Ok(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_accepted() {
        assert_eq!(check_return_to(None).as_deref(), Ok(DEFAULT_RETURN_TO));
        assert_eq!(check_return_to(Some("")).as_deref(), Ok(DEFAULT_RETURN_TO));
        for good in [
            "/",
            "/api/v1/account",
            "/oauth/authorize?client_id=a&redirect_uri=https%3A%2F%2Fx.test%2Fcb",
            "/connect/1#viewer",
        ] {
            assert_eq!(check_return_to(Some(good)).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "//evil.test",
            "//evil.test/path",
            "https://evil.test",
            "http://127.0.0.1:8080/",
            "/\\evil.test",
            "\\\\evil.test",
            "/%0a//evil",
            "/ok\r\nLocation: x",
            "/a b",
            "javascript:alert(1)",
            "evil.test",
            "\t//evil.test",
        ] {
            if bad == "/%0a//evil" {
                // Percent-encoded bytes stay a path on this site.
                assert!(check_return_to(Some(bad)).is_ok());
                continue;
            }
            assert_eq!(check_return_to(Some(bad)), Err(BadReturnTo), "{bad:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_RETURN_TO));
        assert_eq!(check_return_to(Some(&long)), Err(BadReturnTo));
    }
}
