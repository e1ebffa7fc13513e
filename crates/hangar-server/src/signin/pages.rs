//! The sign-in pages hangar renders itself: the sign-in page (one button per provider and a
//! personal access token form) and the error page. Small, static HTML with every value
//! escaped; no script.

use std::fmt::Write as _;

use super::ProviderButton;

/// `Content-Security-Policy` of these pages: no script, no framing, forms post to hangar only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;\
padding:0 1rem;color:#1d2330}h1{font-size:1.4rem}a.button,button{display:block;width:100%;\
box-sizing:border-box;padding:.6rem;margin:.4rem 0;border:1px solid #8891a5;border-radius:6px;\
background:#f4f6fa;color:inherit;text-align:center;text-decoration:none;font-size:1rem;\
cursor:pointer}input{width:100%;box-sizing:border-box;padding:.5rem;margin:.3rem 0;\
font-size:1rem}hr{margin:1.5rem 0;border:0;border-top:1px solid #d5d9e2}.error{color:#a1111b}\
small{color:#5b6478}";

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters kept).
pub fn encode_query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · hangar</title><style>{STYLE}</style></head><body><main>{body}</main>\
         </body></html>",
        escape(title)
    )
}

/// The sign-in page. `return_to` is an already checked path; `signed_in_as` names the
/// person when the request carries a valid session; `error` is shown above the choices (a
/// refused token).
pub fn login_page(
    providers: &[ProviderButton],
    return_to: &str,
    signed_in_as: Option<&str>,
    error: Option<&str>,
) -> String {
    let mut body = String::from("<h1>Sign in to hangar</h1>");
    if let Some(error) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(error)
        );
    }
    if let Some(name) = signed_in_as {
        let _ = write!(
            body,
            "<p>Signed in as <strong>{}</strong>.</p>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button>\
             </form><hr>",
            escape(name)
        );
    }
    for p in providers {
        let _ = write!(
            body,
            "<a class=\"button\" href=\"/login/{}?return_to={}\">Sign in with {}</a>",
            escape(&encode_query_value(&p.name)),
            escape(&encode_query_value(return_to)),
            escape(&p.label)
        );
    }
    if !providers.is_empty() {
        body.push_str("<hr>");
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login/token\">\
         <label for=\"token\">Personal access token</label>\
         <input id=\"token\" type=\"password\" name=\"token\" autocomplete=\"off\" required \
         placeholder=\"hgr_pat_...\">\
         <input type=\"hidden\" name=\"return_to\" value=\"{}\">\
         <button type=\"submit\">Sign in with a token</button></form>\
         <p><small>On a local install, the admin's token is in the data directory's \
         <code>admin-token</code> file.</small></p>",
        escape(return_to)
    );
    layout("Sign in", &body)
}

/// The error page: what went wrong, and a link to start again.
pub fn error_page(message: &str) -> String {
    layout(
        "Sign-in failed",
        &format!(
            "<h1>Sign-in failed</h1><p class=\"error\">{}</p>\
             <p><a class=\"button\" href=\"/login\">Back to sign-in</a></p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_everything_they_show() {
        let providers = [ProviderButton {
            name: "corp".into(),
            label: "<script>x</script>".into(),
        }];
        let page = login_page(
            &providers,
            "/a?b=\"c\"&d",
            Some("<b>eve</b>"),
            Some("<i>no</i>"),
        );
        assert!(!page.contains("<i>no"), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>eve"), "{page}");
        assert!(
            page.contains("/login/corp?return_to=/a%3Fb%3D%22c%22%26d"),
            "{page}"
        );
        assert!(
            page.contains("value=\"/a?b=&quot;c&quot;&amp;d\""),
            "{page}"
        );
        let page = error_page("bad \"<thing>\"");
        assert!(page.contains("bad &quot;&lt;thing&gt;&quot;"), "{page}");
    }
}
