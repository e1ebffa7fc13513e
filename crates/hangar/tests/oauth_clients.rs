//! Real third-party clients drive hangar's authorization server on loopback: `oauth4webapi`
//! (npm) and Authlib (PyPI), each doing discovery, authorization code + PKCE through hangar's
//! own sign-in and consent pages, refresh (with rotation), introspection, userinfo (OpenID
//! Connect), revocation, and the device authorization grant with hangar's verification page.
//! The clients live in `tests/clients/` and talk to the test one JSON line at a time; the test
//! plays the person's browser (a session made by signing in with a personal access token).

mod oauth_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use hangar_testkit::TestPlane;
use oauth_support::{register, REDIRECT};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Deadline of one exchange with a client process.
const CLIENT_STEP: Duration = Duration::from_secs(60);

/// The person's browser: hangar's session cookie, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    /// Signs in on `/login/token` with the admin's personal access token.
    async fn sign_in(tp: &TestPlane) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        let resp = http
            .post(format!("{}/login/token", tp.base))
            .header("origin", &tp.base)
            .form(&[("token", tp.admin_token.as_str()), ("return_to", "/")])
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 303, "sign-in answered {}", resp.status());
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| {
                c.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("hangar_session="))
            })
            .context("no session cookie")?
            .to_owned();
        Ok(Self {
            http,
            base: tp.base.clone(),
            cookie,
        })
    }

    async fn get(&self, url: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .get(url)
            .header("cookie", &self.cookie)
            .send()
            .await?)
    }

    async fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base)
            .form(form)
            .send()
            .await?)
    }

    /// Opens the authorization URL, checks the consent page, allows, and returns where hangar
    /// sends the browser back (the client's redirect URI with `code`, `state`, `iss`).
    async fn consent(&self, authorize: &str) -> anyhow::Result<String> {
        let page = self.get(authorize).await?;
        anyhow::ensure!(page.status() == 200, "consent page: {}", page.status());
        assert_eq!(
            page.headers()
                .get("x-frame-options")
                .and_then(|v| v.to_str().ok()),
            Some("DENY")
        );
        let html = page.text().await?;
        assert!(html.contains("Allow Test app?"), "{html}");
        let query = authorize
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or_default();
        let answer = self
            .post_form(
                "/oauth/authorize",
                &[("request", query), ("decision", "allow")],
            )
            .await?;
        anyhow::ensure!(
            answer.status() == 303,
            "consent answered {}",
            answer.status()
        );
        Ok(answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("no Location")?
            .to_owned())
    }

    /// Approves `user_code` on the device verification page.
    async fn approve_device(&self, verification_uri: &str, user_code: &str) -> anyhow::Result<()> {
        let page = self
            .get(&format!("{verification_uri}?user_code={user_code}"))
            .await?;
        let html = page.text().await?;
        assert!(html.contains("Connect Test app?"), "{html}");
        let done = self
            .post_form(
                "/oauth/device",
                &[("user_code", user_code), ("decision", "allow")],
            )
            .await?;
        let html = done.text().await?;
        anyhow::ensure!(html.contains("is connected"), "{html}");
        Ok(())
    }
}

/// A client process and its output lines.
struct ClientProcess {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientProcess {
    fn spawn(mut cmd: Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    async fn next(&mut self) -> anyhow::Result<Value> {
        let line = tokio::time::timeout(CLIENT_STEP, self.lines.next_line())
            .await
            .context("the client said nothing in time")??
            .context("the client exited")?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("client said {line}"))?;
        anyhow::ensure!(v.get("error").is_none(), "client failed: {v}");
        Ok(v)
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        Ok(stdin.flush().await?)
    }
}

fn clients_dir() -> PathBuf {
    hangar_testkit::workspace_root().join("crates/hangar/tests/clients")
}

/// `node client.mjs` of oauth4webapi, or Authlib's `client.py` in the test virtualenv
/// (`HANGAR_TEST_PYTHON`, default `target/test-clients/venv/bin/python`, made by
/// `cargo xtask test`).
fn client_command(which: &str) -> Command {
    match which {
        "oauth4webapi" => {
            let mut cmd = Command::new("node");
            cmd.arg(clients_dir().join("oauth4webapi/client.mjs"));
            cmd
        }
        _ => {
            let python = std::env::var_os("HANGAR_TEST_PYTHON").map_or_else(
                || hangar_testkit::workspace_root().join("target/test-clients/venv/bin/python"),
                PathBuf::from,
            );
            let mut cmd = Command::new(python);
            cmd.arg(clients_dir().join("authlib/client.py"));
            cmd
        }
    }
}

async fn code_flow(which: &str, public: bool, scope: &str) -> anyhow::Result<Value> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, public, scope, &[]).await?;
    let browser = Browser::sign_in(&tp).await?;
    let mut cmd = client_command(which);
    cmd.env("MODE", "code")
        .env("ISSUER", &tp.base)
        .env("CLIENT_ID", &app.id)
        .env("REDIRECT_URI", REDIRECT)
        .env("SCOPE", scope);
    if let Some(secret) = &app.secret {
        cmd.env("CLIENT_SECRET", secret);
    }
    let mut client = ClientProcess::spawn(cmd)?;
    let authorize = client.next().await?;
    let url = authorize["authorize"].as_str().context("authorize URL")?;
    assert!(
        url.starts_with(&format!("{}/oauth/authorize?", tp.base)),
        "{url}"
    );
    let back = browser.consent(url).await?;
    assert!(back.starts_with(REDIRECT), "{back}");
    client.send(&back).await?;
    let result = client.next().await?["result"].clone();
    let (status, _) = tp
        .request(
            reqwest::Method::GET,
            "/api/v1/sandboxes",
            Some(result["access_token"].as_str().unwrap_or_default()),
            None,
        )
        .await?;
    // The client revoked its refresh token at the end, which revokes the grant's access
    // tokens too (RFC 7009 section 2.1): the API refuses the access token now.
    assert_eq!(status, 401, "{result}");
    tp.shutdown().await?;
    Ok(result)
}

async fn device_flow(which: &str, public: bool) -> anyhow::Result<Value> {
    let tp = TestPlane::start().await?;
    let scope = "sandboxes:read";
    let app = register(
        &tp,
        public,
        scope,
        &[
            "urn:ietf:params:oauth:grant-type:device_code",
            "refresh_token",
        ],
    )
    .await?;
    let browser = Browser::sign_in(&tp).await?;
    let mut cmd = client_command(which);
    cmd.env("MODE", "device")
        .env("ISSUER", &tp.base)
        .env("CLIENT_ID", &app.id)
        .env("SCOPE", scope);
    if let Some(secret) = &app.secret {
        cmd.env("CLIENT_SECRET", secret);
    }
    let mut client = ClientProcess::spawn(cmd)?;
    let device = client.next().await?;
    let uri = device["verification_uri"]
        .as_str()
        .context("verification_uri")?;
    assert_eq!(uri, format!("{}/oauth/device", tp.base));
    browser
        .approve_device(uri, device["user_code"].as_str().context("user_code")?)
        .await?;
    let result = client.next().await?["result"].clone();
    tp.shutdown().await?;
    Ok(result)
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth4webapi_confidential_client_with_openid() -> anyhow::Result<()> {
    let r = code_flow(
        "oauth4webapi",
        false,
        "sandboxes:read openid profile offline_access",
    )
    .await?;
    assert_eq!(r["token_type"], "bearer", "{r}");
    assert_eq!(r["id_token_claims"]["name"], "admin", "{r}");
    assert_eq!(r["userinfo"]["sub"], r["id_token_claims"]["sub"], "{r}");
    assert_eq!(r["refresh_rotated"], true, "{r}");
    assert_eq!(r["introspection"]["active"], true, "{r}");
    assert_eq!(r["after_revoke"]["active"], false, "{r}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth4webapi_public_client_and_device_grant() -> anyhow::Result<()> {
    let r = code_flow("oauth4webapi", true, "sandboxes:read offline_access").await?;
    assert_eq!(r["refresh_rotated"], true, "{r}");
    let r = device_flow("oauth4webapi", true).await?;
    assert_eq!(r["scope"], "sandboxes:read", "{r}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn authlib_confidential_client_code_and_device() -> anyhow::Result<()> {
    let r = code_flow("authlib", false, "sandboxes:read offline_access").await?;
    assert_eq!(r["refresh_rotated"], true, "{r}");
    assert_eq!(r["introspection"]["active"], true, "{r}");
    assert_eq!(r["after_revoke"]["active"], false, "{r}");
    let r = device_flow("authlib", false).await?;
    assert_eq!(r["introspection"]["active"], true, "{r}");
    assert_eq!(r["after_revoke"]["active"], false, "{r}");
    Ok(())
}

/// The authorization page's own rules: a person who is not signed in goes to `/login` (and
/// back); an unknown client or an unregistered redirect URI is shown on hangar's page, never
/// redirected (no open redirect, RFC 9700 section 4.11); "deny" answers `access_denied` with
/// `state` and `iss` (RFC 9207); a consent posted from another origin is refused; nothing is
/// cached or framed.
#[tokio::test(flavor = "multi_thread")]
async fn the_authorization_page_signs_in_first_and_never_redirects_blindly() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, true, "sandboxes:read", &[]).await?;
    let browser = Browser::sign_in(&tp).await?;
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=sandboxes%3Aread&state=s-1\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        app.id,
        urlencode(REDIRECT)
    );
    let authorize = format!("{}/oauth/authorize?{query}", tp.base);

    // Not signed in: to the sign-in page, which brings the person back.
    let anonymous = browser.http.get(&authorize).send().await?;
    assert_eq!(anonymous.status(), 303);
    let login = anonymous
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        login.starts_with("/login?return_to=/oauth/authorize%3F"),
        "{login}"
    );

    // An unregistered redirect URI or an unknown client: hangar's own page.
    for bad in [
        query.replace(&urlencode(REDIRECT), "https%3A%2F%2Fevil.test%2Fcb"),
        query.replace(&app.id, "00000000-0000-4000-8000-000000000000"),
    ] {
        let page = browser
            .get(&format!("{}/oauth/authorize?{bad}", tp.base))
            .await?;
        assert_eq!(page.status(), 400, "{bad}");
        assert!(page.headers().get("location").is_none());
    }
    // Other errors go back to the client, with state and iss: here `plain` PKCE.
    let plain = query.replace("code_challenge_method=S256", "code_challenge_method=plain");
    let back = browser
        .get(&format!("{}/oauth/authorize?{plain}", tp.base))
        .await?;
    assert_eq!(back.status(), 303);
    let location = back
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert!(
        location.contains("state=s-1") && location.contains("iss="),
        "{location}"
    );

    // The consent page is neither cached nor framed; a cross-origin consent is refused.
    let page = browser.get(&authorize).await?;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let forged = browser
        .http
        .post(format!("{}/oauth/authorize", tp.base))
        .header("cookie", &browser.cookie)
        .header("origin", "https://evil.test")
        .form(&[("request", query.as_str()), ("decision", "allow")])
        .send()
        .await?;
    assert_eq!(forged.status(), 403);
    let (_, apps) = tp
        .request(
            reqwest::Method::GET,
            "/api/v1/account/apps",
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(
        apps,
        serde_json::json!([]),
        "a refused consent grants nothing"
    );

    // Deny: access_denied, state and iss, and still no grant.
    let denied = browser
        .post_form(
            "/oauth/authorize",
            &[("request", &query), ("decision", "deny")],
        )
        .await?;
    let location = denied
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert!(location.contains("error=access_denied"), "{location}");
    assert!(
        location.contains("state=s-1") && location.contains("iss="),
        "{location}"
    );
    let (_, apps) = tp
        .request(
            reqwest::Method::GET,
            "/api/v1/account/apps",
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(apps, serde_json::json!([]));
    tp.shutdown().await
}

fn urlencode(s: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", s)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_owned()))
        .unwrap_or_default()
}
