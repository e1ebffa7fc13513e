//! Signing in to hangar with a real OpenID provider (`oidc-provider` from npm, started on
//! loopback from `tests/support/oidc/`) and with a stand-in of GitHub's OAuth app endpoints,
//! driven like a browser: reqwest with a cookie store, redirects followed one by one, the
//! provider's own login and consent forms submitted. Also: session cookies, CSRF, logout,
//! open redirects, the personal-access-token form and the rate limit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use hangar_identity::TokenHash;
use hangar_server::signin::{GithubConfig, OidcProviderConfig, RateLimit, Secret, SigninConfig};
use hangar_testkit::github_auth::{GithubStandIn, GithubUser};
use hangar_testkit::standin::pkce_s256;
use hangar_testkit::{TestConfig, TestPlane};
use reqwest::header::{HeaderMap, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

const IDP: &str = "testidp";
const CLIENT_ID: &str = "hangar-test";
const CLIENT_SECRET: &str = "hangar-test-secret-0123456789";

// ---------------------------------------------------------------------------------------------
// The real OpenID provider

/// `oidc-provider` running under node; killed when dropped (and it exits by itself when its
/// stdin, held here, closes).
struct OidcProvider {
    issuer: String,
    _child: tokio::process::Child,
}

fn support_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc")
}

impl OidcProvider {
    async fn start(redirect_uri: &str) -> anyhow::Result<Self> {
        let dir = support_dir();
        if !dir.join("node_modules/oidc-provider").is_dir() {
            // `cargo xtask test` runs this first; a bare `cargo test` does it here.
            let status = tokio::process::Command::new("npm")
                .current_dir(&dir)
                .args(["ci", "--no-audit", "--no-fund"])
                .status()
                .await
                .context("running npm ci for the test OpenID provider")?;
            if !status.success() {
                bail!("npm ci in {} failed", dir.display());
            }
        }
        let mut child = tokio::process::Command::new("node")
            .current_dir(&dir)
            .arg("provider.mjs")
            .env("REDIRECT_URI", redirect_uri)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .context("starting node (is Node.js installed?)")?;
        let stdout = child.stdout.take().context("provider stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the OpenID provider did not start within 30 s")??
            .context("the OpenID provider exited before listening")?;
        let v: Value = serde_json::from_str(&line).context("provider's first line")?;
        let issuer = v["issuer"].as_str().context("issuer")?.to_owned();
        // Keep reading, so a stray line never meets a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            issuer,
            _child: child,
        })
    }
}

fn oidc_config(issuer: &str) -> OidcProviderConfig {
    OidcProviderConfig {
        name: IDP.into(),
        display_name: Some("Test IdP".into()),
        issuer: issuer.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(CLIENT_SECRET),
        scopes: vec!["email".into(), "profile".into()],
    }
}

/// A plane whose sign-in knows the real provider, and the provider.
async fn plane_with_idp(rate_limit: RateLimit) -> anyhow::Result<(TestPlane, OidcProvider)> {
    let (listener, base) = TestPlane::listener().await?;
    let idp = OidcProvider::start(&format!("{base}/login/{IDP}/callback")).await?;
    let signin = SigninConfig {
        public_url: SigninConfig::parse_public_url(&base)?,
        oidc: vec![oidc_config(&idp.issuer)],
        rate_limit,
        ..SigninConfig::default()
    };
    let tp = TestPlane::start_on(
        TestConfig {
            signin,
            ..TestConfig::default()
        },
        listener,
    )
    .await?;
    Ok((tp, idp))
}

fn generous() -> RateLimit {
    RateLimit {
        burst: 1000,
        replenish_every: Duration::from_millis(10),
    }
}

// ---------------------------------------------------------------------------------------------
// A browser

/// A browser: cookies kept, redirects not followed by reqwest (the test follows them).
fn browser() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// One response seen while following redirects.
#[derive(Debug)]
struct Hop {
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
}

/// The end of a navigation: every hop, and the last page's body.
#[derive(Debug)]
struct Page {
    hops: Vec<Hop>,
    body: String,
}

impl Page {
    fn last(&self) -> &Hop {
        self.hops
            .last()
            .unwrap_or_else(|| unreachable!("a page has a hop"))
    }

    /// The hop answering hangar's callback.
    fn callback(&self) -> Option<&Hop> {
        self.hops
            .iter()
            .find(|h| h.url.path().ends_with("/callback"))
    }

    fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("JSON: {}", self.body))
    }
}

/// Sends `request` and follows redirects (GET) up to 20 times, stopping early before a URL
/// for which `stop` says so.
async fn navigate(
    browser: &reqwest::Client,
    request: reqwest::RequestBuilder,
    stop: impl Fn(&Url) -> bool,
) -> anyhow::Result<Page> {
    let mut hops = Vec::new();
    let mut response = request.send().await?;
    for _ in 0..20 {
        let url = response.url().clone();
        let status = response.status();
        let headers = response.headers().clone();
        hops.push(Hop {
            url: url.clone(),
            status,
            headers: headers.clone(),
        });
        let location = headers.get(LOCATION).and_then(|v| v.to_str().ok());
        match location {
            Some(location) if status.is_redirection() => {
                let next = url.join(location)?;
                if stop(&next) {
                    return Ok(Page {
                        hops,
                        body: next.to_string(),
                    });
                }
                response = browser.get(next).send().await?;
            }
            _ => {
                let body = response.text().await?;
                return Ok(Page { hops, body });
            }
        }
    }
    bail!("more than 20 redirects")
}

async fn get(browser: &reqwest::Client, url: &str) -> anyhow::Result<Page> {
    navigate(browser, browser.get(url), |_| false).await
}

/// Fills oidc-provider's development login form (any password) and its consent form.
async fn log_in_at_idp(
    browser: &reqwest::Client,
    login_page: &Page,
    login: &str,
    stop: impl Fn(&Url) -> bool + Copy,
) -> anyhow::Result<Page> {
    let form = login_page.last().url.clone();
    assert!(
        login_page.body.contains("name=\"login\""),
        "expected the provider's login form at {form}: {}",
        login_page.body
    );
    let consent = navigate(
        browser,
        browser
            .post(form)
            .form(&[("prompt", "login"), ("login", login), ("password", "any")]),
        stop,
    )
    .await?;
    if !consent.body.contains("value=\"consent\"") {
        return Ok(consent);
    }
    let form = consent.last().url.clone();
    navigate(
        browser,
        browser.post(form).form(&[("prompt", "consent")]),
        stop,
    )
    .await
}

/// A whole sign-in in a fresh browser, ending on `return_to` (`/api/v1/account`).
async fn oidc_sign_in(base: &str, login: &str) -> anyhow::Result<(reqwest::Client, Page)> {
    let b = browser()?;
    let login_page = get(&b, &format!("{base}/login/{IDP}?return_to=/api/v1/account")).await?;
    let done = log_in_at_idp(&b, &login_page, login, |_| false).await?;
    Ok((b, done))
}

fn set_cookie(hop: &Hop) -> String {
    hop.headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hangar_session="))
        .unwrap_or_default()
        .to_owned()
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

async fn counts(tp: &TestPlane) -> anyhow::Result<(u64, u64)> {
    let store = &tp.plane.state.store;
    Ok((
        store.users().count().await?,
        store.external_identities().count().await?,
    ))
}

async fn sessions_of(tp: &TestPlane, name: &str) -> anyhow::Result<usize> {
    let store = &tp.plane.state.store;
    let Some(user) = store.users().get_by_name(name).await? else {
        return Ok(0);
    };
    Ok(store.browser_sessions().list_for_user(user.id).await?.len())
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn oidc_first_sign_in_creates_the_account_and_later_ones_find_it() -> anyhow::Result<()> {
    let (tp, _idp) = plane_with_idp(generous()).await?;
    let base = tp.base.clone();
    assert_eq!(counts(&tp).await?, (1, 0), "only the bootstrap admin");

    // The sign-in page lists the provider and the token form.
    let page = get(&browser()?, &format!("{base}/login")).await?;
    assert_eq!(page.last().status, StatusCode::OK);
    assert!(page.body.contains("Sign in with Test IdP"), "{}", page.body);
    assert!(
        page.body.contains("action=\"/login/token\""),
        "{}",
        page.body
    );

    let (browser1, done) = oidc_sign_in(&base, "alice-sub-1").await?;
    let last = done.last();
    assert_eq!(last.status, StatusCode::OK, "{:?}", done.hops);
    assert_eq!(last.url.path(), "/api/v1/account");
    let account = done.json()?;
    assert_eq!(account["name"], "alice", "{account}");
    assert_eq!(account["is_admin"], false);
    assert_eq!(account["identities"][0]["provider"], IDP);
    assert_eq!(account["identities"][0]["subject"], "alice-sub-1");
    assert_eq!(account["identities"][0]["email"], "alice@example.test");
    let user_id = account["id"].as_str().unwrap_or_default().to_owned();

    // The callback set the session cookie with the safe attributes (http public URL: no
    // Secure), and redirected to a path of hangar only.
    let callback = done.callback().context("callback hop")?;
    assert_eq!(callback.status, StatusCode::SEE_OTHER);
    assert_eq!(
        callback.headers.get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/api/v1/account")
    );
    let cookie = set_cookie(callback);
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let session = cookie_value(&cookie);
    assert!(session.starts_with("hgr_sess_"));
    // Stored hashed only: the hash is found, the secret is nowhere in the database file.
    let stored = tp
        .plane
        .state
        .store
        .browser_sessions()
        .get_by_hash(&TokenHash::of(&session).0)
        .await?;
    assert!(stored.is_some());
    let db = std::fs::read(tp.data.path().join("hangar.db"))?;
    let wal = std::fs::read(tp.data.path().join("hangar.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(session.len())
                .any(|w| w == session.as_bytes()),
            "the session secret is not stored"
        );
    }

    // The session works for the API (GET needs no Origin) and for unsafe methods only from
    // hangar's own origin.
    let (status, _) = cookie_request(
        &browser1,
        Method::GET,
        &format!("{base}/api/v1/sandboxes"),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let (status, body) = cookie_request(
        &browser1,
        Method::POST,
        &format!("{base}/api/v1/tokens"),
        Some("https://evil.test"),
    )
    .await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "cross_origin");
    let (status, _) = cookie_request(
        &browser1,
        Method::POST,
        &format!("{base}/api/v1/tokens"),
        None,
    )
    .await?;
    assert_eq!(status, 403, "no Origin, no Sec-Fetch-Site: refused");
    let (status, body) = cookie_request(
        &browser1,
        Method::POST,
        &format!("{base}/api/v1/tokens"),
        Some(&base),
    )
    .await?;
    assert_eq!(status, 201, "{body}");
    // A bearer token still wins over the cookie.
    let (status, me) = tp
        .request(Method::GET, "/api/v1/account", Some(&tp.admin_token), None)
        .await?;
    assert_eq!((status, me["name"].as_str()), (200, Some("admin")));

    // A later sign-in with the same subject finds the same account.
    let (_, again) = oidc_sign_in(&base, "alice-sub-1").await?;
    assert_eq!(again.json()?["id"], user_id.as_str());
    assert_eq!(counts(&tp).await?, (2, 1));
    assert_eq!(sessions_of(&tp, "alice").await?, 2);

    // Another subject with the same preferred_username gets a suffixed name.
    let (_, other) = oidc_sign_in(&base, "alice-sub-2").await?;
    assert_eq!(other.json()?["name"], "alice-2");
    assert_eq!(counts(&tp).await?, (3, 2));

    // Logging out revokes the session and clears the cookie; a cross-site logout is refused.
    let (status, _) = cookie_request(
        &browser1,
        Method::POST,
        &format!("{base}/logout"),
        Some("https://evil.test"),
    )
    .await?;
    assert_eq!(status, 403);
    let out = navigate(
        &browser1,
        browser1
            .post(format!("{base}/logout"))
            .header(ORIGIN, base.as_str()),
        |_| true,
    )
    .await?;
    assert_eq!(out.last().status, StatusCode::SEE_OTHER);
    let cleared = set_cookie(out.last());
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let record = tp
        .plane
        .state
        .store
        .browser_sessions()
        .get_by_hash(&TokenHash::of(&session).0)
        .await?
        .context("session record")?;
    assert!(record.revoked_at.is_some(), "logout revokes in the store");
    let raw = reqwest::Client::new()
        .get(format!("{base}/api/v1/account"))
        .header("cookie", format!("hangar_session={session}"))
        .send()
        .await?;
    assert_eq!(raw.status(), 401, "a revoked session is refused");
    Ok(())
}

/// Sends `method url` with the browser's cookies and an optional `Origin`; returns the status
/// and the JSON body (Null if none).
async fn cookie_request(
    browser: &reqwest::Client,
    method: Method,
    url: &str,
    origin: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let mut req = browser.request(method.clone(), url);
    if let Some(origin) = origin {
        req = req.header(ORIGIN, origin);
    }
    if method == Method::POST && url.ends_with("/tokens") {
        req = req.json(&serde_json::json!({"name": "from-browser"}));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_oidc_sign_ins_show_an_error_and_create_nothing() -> anyhow::Result<()> {
    let (tp, idp) = plane_with_idp(generous()).await?;
    let base = tp.base.clone();
    let is_callback = |u: &Url| u.path() == format!("/login/{IDP}/callback");

    // The person refuses at the provider: error=access_denied comes back.
    let b = browser()?;
    let login_page = get(&b, &format!("{base}/login/{IDP}")).await?;
    let abort = format!("{}/abort", login_page.last().url);
    let denied = get(&b, &abort).await?;
    let last = denied.last();
    assert_eq!(last.url.path(), format!("/login/{IDP}/callback"));
    assert!(last
        .url
        .query()
        .unwrap_or_default()
        .contains("error=access_denied"));
    assert_eq!(last.status, StatusCode::FORBIDDEN);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);
    assert!(set_cookie(last).is_empty());
    assert_eq!(counts(&tp).await?, (1, 0));

    // A tampered state.
    let b = browser()?;
    let started = navigate(&b, b.get(format!("{base}/login/{IDP}")), |_| true).await?;
    let upstream = Url::parse(&started.body)?;
    let state = upstream
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .context("state")?;
    let tampered = get(
        &b,
        &format!("{base}/login/{IDP}/callback?code=abc&state={state}x"),
    )
    .await?;
    assert_eq!(tampered.last().status, StatusCode::BAD_REQUEST);
    assert!(tampered.body.contains("unknown state"), "{}", tampered.body);
    let no_state = get(&b, &format!("{base}/login/{IDP}/callback?code=abc")).await?;
    assert_eq!(no_state.last().status, StatusCode::BAD_REQUEST);

    // A replayed callback: the first use signs in, the second is refused.
    let b = browser()?;
    let login_page = get(&b, &format!("{base}/login/{IDP}")).await?;
    let held = log_in_at_idp(&b, &login_page, "alice-sub-1", is_callback).await?;
    let callback_url = held.body.clone();
    assert!(callback_url.contains("code="), "{callback_url}");
    let first = get(&b, &callback_url).await?;
    assert!(
        !set_cookie(&first.hops[0]).is_empty(),
        "the first use signs in"
    );
    assert_eq!(counts(&tp).await?, (2, 1));
    let replay = get(&browser()?, &callback_url).await?;
    assert_eq!(replay.last().status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    assert!(set_cookie(replay.last()).is_empty());
    assert_eq!(
        sessions_of(&tp, "alice").await?,
        1,
        "the replay made no session"
    );

    // A code issued for another nonce (an injected code, RFC 9700 section 4.5): the same
    // client, redirect URI and PKCE challenge as hangar's own request, but another nonce.
    let b = browser()?;
    let started = navigate(&b, b.get(format!("{base}/login/{IDP}")), |_| true).await?;
    let theirs = Url::parse(&started.body)?;
    let param = |k: &str| {
        theirs
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let state = param("state");
    let stored = tp
        .plane
        .state
        .store
        .signin_states()
        .get(&TokenHash::of(&state).0)
        .await?
        .context("stored sign-in")?;
    assert_eq!(param("code_challenge"), pkce_s256(&stored.pkce_verifier));
    assert_eq!(param("code_challenge_method"), "S256");
    assert!(stored.nonce.as_deref().is_some_and(|n| n == param("nonce")));
    let mut injected = Url::parse(&format!("{}/auth", idp.issuer))?;
    injected
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &format!("{base}/login/{IDP}/callback"))
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile")
        .append_pair("state", &state)
        .append_pair("nonce", "not-hangars-nonce")
        .append_pair("code_challenge", &param("code_challenge"))
        .append_pair("code_challenge_method", "S256");
    let login_page = get(&b, injected.as_str()).await?;
    let mismatch = log_in_at_idp(&b, &login_page, "alice-sub-2", |_| false).await?;
    let last = mismatch.last();
    assert_eq!(last.url.path(), format!("/login/{IDP}/callback"));
    assert_eq!(last.status, StatusCode::BAD_GATEWAY, "{}", mismatch.body);
    assert!(
        mismatch.body.contains("could not be verified"),
        "{}",
        mismatch.body
    );
    assert_eq!(counts(&tp).await?, (2, 1), "alice-sub-2 was not created");

    // Open redirects are refused before anything is stored or anyone is sent anywhere.
    for bad in [
        "//evil.test",
        "https://evil.test",
        "/\\evil.test",
        "//evil.test/%2e%2e",
    ] {
        let enc: String = url_encode(bad);
        for path in [
            format!("/login/{IDP}?return_to={enc}"),
            format!("/login?return_to={enc}"),
        ] {
            let page = get(&browser()?, &format!("{base}{path}")).await?;
            assert_eq!(page.hops.len(), 1, "{path}: no redirect");
            assert_eq!(page.last().status, StatusCode::BAD_REQUEST, "{path}");
            assert!(
                page.body.contains("return_to must be a path"),
                "{}",
                page.body
            );
        }
        let form = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?
            .post(format!("{base}/login/token"))
            .header(ORIGIN, base.as_str())
            .form(&[("token", tp.admin_token.as_str()), ("return_to", bad)])
            .send()
            .await?;
        assert_eq!(form.status(), 400, "{bad}");
        assert!(form.headers().get(LOCATION).is_none());
        assert!(form.headers().get(SET_COOKIE).is_none());
    }
    // An unknown provider.
    let page = get(&browser()?, &format!("{base}/login/nope")).await?;
    assert_eq!(page.last().status, StatusCode::NOT_FOUND);
    assert_eq!(counts(&tp).await?, (2, 1));
    Ok(())
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn github_sign_in_against_the_stand_in() -> anyhow::Result<()> {
    let (listener, base) = TestPlane::listener().await?;
    let github = GithubStandIn::start(
        "Iv1.testapp",
        "github-test-secret",
        &format!("{base}/login/github/callback"),
        GithubUser {
            id: 583231,
            login: "Octocat".into(),
            email: "octocat@github.test".into(),
        },
    )
    .await?;
    let mut config = GithubConfig::new("Iv1.testapp", Secret::new("github-test-secret"));
    config.authorize_url = format!("{}/login/oauth/authorize", github.base);
    config.token_url = format!("{}/login/oauth/access_token", github.base);
    config.api_url = format!("{}/api", github.base);
    let tp = TestPlane::start_on(
        TestConfig {
            signin: SigninConfig {
                public_url: SigninConfig::parse_public_url(&base)?,
                github: Some(config),
                rate_limit: generous(),
                ..SigninConfig::default()
            },
            ..TestConfig::default()
        },
        listener,
    )
    .await?;

    let page = get(&browser()?, &format!("{base}/login")).await?;
    assert!(page.body.contains("Sign in with GitHub"), "{}", page.body);

    let b = browser()?;
    let done = get(
        &b,
        &format!("{base}/login/github?return_to=/api/v1/account"),
    )
    .await?;
    assert_eq!(
        done.last().status,
        StatusCode::OK,
        "{:?} {}",
        done.hops,
        done.body
    );
    let account = done.json()?;
    assert_eq!(account["name"], "octocat");
    assert_eq!(account["identities"][0]["provider"], "github");
    assert_eq!(account["identities"][0]["subject"], "583231");
    assert_eq!(
        account["identities"][0]["email"], "octocat@github.test",
        "the primary verified email"
    );
    let authorize = &done.hops[1].url;
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(
        q.get("scope").map(String::as_str),
        Some("read:user user:email")
    );

    let again = get(
        &browser()?,
        &format!("{base}/login/github?return_to=/api/v1/account"),
    )
    .await?;
    assert_eq!(again.json()?["id"], account["id"]);
    assert_eq!(counts(&tp).await?, (2, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn token_form_secure_cookies_csrf_and_rate_limit() -> anyhow::Result<()> {
    let public = "https://hangar.example.test";
    let tp = TestPlane::start_config(TestConfig {
        signin: SigninConfig {
            public_url: SigninConfig::parse_public_url(public)?,
            rate_limit: RateLimit {
                burst: 6,
                replenish_every: Duration::from_secs(60),
            },
            ..SigninConfig::default()
        },
        ..TestConfig::default()
    })
    .await?;
    let base = tp.base.clone();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let post_token = |token: &str, origin: &str| {
        http.post(format!("{base}/login/token"))
            .header(ORIGIN, origin)
            .form(&[("token", token), ("return_to", "/api/v1/account")])
            .send()
    };

    // 1: a personal access token typed into the form gives a Secure session cookie.
    let resp = post_token(&tp.admin_token, public).await?;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/api/v1/account")
    );
    let cookie = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    let session = cookie_value(&cookie);

    // 2: the cookie authenticates; an unsafe request needs the public URL's origin.
    let with_cookie = |method: Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .header("cookie", format!("hangar_session={session}"))
    };
    let me: Value = with_cookie(Method::GET, "/api/v1/account")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["name"], "admin");
    let refused = with_cookie(Method::POST, "/api/v1/tokens")
        .header(ORIGIN, base.as_str())
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await?;
    assert_eq!(
        refused.status(),
        403,
        "the listener's origin is not the public URL's"
    );
    assert_eq!(
        refused
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let fetch_meta = with_cookie(Method::POST, "/api/v1/tokens")
        .header("sec-fetch-site", "same-origin")
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await?;
    assert_eq!(fetch_meta.status(), 201);

    // 3: login CSRF: a cross-site form post is refused. 4: a bad token is refused.
    assert_eq!(
        post_token(&tp.admin_token, "https://evil.test")
            .await?
            .status(),
        403
    );
    let bad = post_token(
        "hgr_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        public,
    )
    .await?;
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get(SET_COOKIE).is_none());

    // The sign-in routes are rate-limited per address: 429 problem+json with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let resp = http.get(format!("{base}/login")).send().await?;
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 200);
    }
    let limited = limited.context("no 429 within the burst")?;
    let retry = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .context("Retry-After")?;
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = limited.json().await?;
    assert_eq!(body["code"], "rate_limited");
    // Sessions live in the store: a second control plane over the same data directory (as
    // after a restart) accepts the cookie.
    let again = hangar_server::local::LocalPlane::open(hangar_server::local::LocalConfig {
        metrics: Default::default(),
        data_dir: tp.data.path().to_owned(),
        store_url: None,
        guest_agent: hangar_testkit::guest_agent(),
        images_dir: Some(tp.data.path().join("images")),
        sandbox: Default::default(),
        connect: Default::default(),
        providers_dir: None,
        signin: tp.plane.state.signin.config().clone(),
        oauth: tp.plane.state.oauth.config().clone(),
        telemetry: Default::default(),
        events: Default::default(),
    })
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let restarted = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, hangar_server::router(again.state)).await;
    });
    let me: Value = http
        .get(format!("{restarted}/api/v1/account"))
        .header("cookie", format!("hangar_session={session}"))
        .send()
        .await?
        .json()
        .await?;
    server.abort();
    assert_eq!(me["name"], "admin", "{me}");

    // The API itself is not limited by the sign-in limit.
    let (status, _) = tp
        .request(Method::GET, "/api/v1/account", Some(&tp.admin_token), None)
        .await?;
    assert_eq!(status, 200);
    Ok(())
}
