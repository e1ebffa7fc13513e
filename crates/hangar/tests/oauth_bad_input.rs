//! Bad input at the OAuth endpoints, from RFC 6749, 7636, 7009, 7662, 8628 and RFC 9700:
//! each request gets the RFC's error and status, and changes nothing (the code stays
//! unredeemed and still works afterwards; the refresh token stays live). The attacks that
//! must change something (code replay, refresh reuse) have tests of their own below.

mod oauth_support;

use hangar_oauth::authorize::{AuthorizationRequest, AuthorizeError};
use hangar_oauth::SecretHash;
use hangar_testkit::{TestConfig, TestPlane};
use oauth_support::*;
use reqwest::{Method, RequestBuilder};

/// What a case may use.
struct Ctx {
    base: String,
    http: reqwest::Client,
    app: Client,
    other: Client,
    public: Client,
    no_device: Client,
    code: String,
    refresh: String,
    access: String,
    pat: String,
}

impl Ctx {
    fn token(&self) -> RequestBuilder {
        self.http.post(format!("{}/oauth/token", self.base))
    }
    fn secret(c: &Client) -> String {
        c.secret.clone().unwrap_or_default()
    }
    fn app_basic(&self, req: RequestBuilder) -> RequestBuilder {
        req.basic_auth(&self.app.id, Some(Self::secret(&self.app)))
    }
    fn exchange(&self, extra: &[(&str, &str)], drop: &[&str]) -> RequestBuilder {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", self.code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        form.retain(|(k, _)| !drop.contains(k) && !extra.iter().any(|(e, _)| e == k));
        form.extend_from_slice(extra);
        self.app_basic(self.token()).form(&form)
    }
    fn refresh_with(&self, extra: &[(&str, &str)]) -> RequestBuilder {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh.as_str()),
        ];
        form.extend_from_slice(extra);
        self.app_basic(self.token()).form(&form)
    }
}

type Build = fn(&Ctx) -> RequestBuilder;

/// Cases that present the code (it must stay unredeemed).
fn code_cases() -> Vec<(&'static str, Build, u16, &'static str)> {
    vec![
        (
            "other registered redirect_uri",
            |c| c.exchange(&[("redirect_uri", "http://127.0.0.1:9/cb")], &[]),
            400,
            "invalid_grant",
        ),
        (
            "unregistered redirect_uri",
            |c| c.exchange(&[("redirect_uri", "https://evil.test/cb")], &[]),
            400,
            "invalid_grant",
        ),
        (
            "redirect_uri left out",
            |c| c.exchange(&[], &["redirect_uri"]),
            400,
            "invalid_grant",
        ),
        (
            "code_verifier left out",
            |c| c.exchange(&[], &["code_verifier"]),
            400,
            "invalid_grant",
        ),
        (
            "wrong code_verifier",
            |c| {
                c.exchange(
                    &[(
                        "code_verifier",
                        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
                    )],
                    &[],
                )
            },
            400,
            "invalid_grant",
        ),
        (
            "code_verifier too short",
            |c| c.exchange(&[("code_verifier", "abc")], &[]),
            400,
            "invalid_grant",
        ),
        (
            "code of another client",
            |c| {
                c.token()
                    .basic_auth(&c.other.id, Some(Ctx::secret(&c.other)))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", c.code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
            },
            400,
            "invalid_grant",
        ),
        (
            "code of another client, public",
            |c| {
                c.token().form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", c.public.id.as_str()),
                    ("code", c.code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
            },
            400,
            "invalid_grant",
        ),
        (
            "unsupported grant type",
            |c| c.exchange(&[("grant_type", "password")], &[]),
            400,
            "unsupported_grant_type",
        ),
        (
            "implicit-style grant type",
            |c| c.exchange(&[("grant_type", "token")], &[]),
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type left out",
            |c| c.exchange(&[], &["grant_type"]),
            400,
            "invalid_request",
        ),
        (
            "code left out",
            |c| c.exchange(&[], &["code"]),
            400,
            "invalid_request",
        ),
        (
            "wrong content type",
            |c| {
                c.app_basic(c.token()).json(&serde_json::json!({"grant_type": "authorization_code", "code": c.code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER}))
            },
            400,
            "invalid_request",
        ),
        (
            "no content type",
            |c| {
                c.app_basic(c.token()).body(format!("grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={VERIFIER}", c.code, REDIRECT))
            },
            400,
            "invalid_request",
        ),
        (
            "duplicated code",
            |c| {
                c.app_basic(c.token())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=authorization_code&code={0}&code={0}&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_verifier={VERIFIER}", c.code))
            },
            400,
            "invalid_request",
        ),
        (
            "duplicated grant_type",
            |c| {
                c.app_basic(c.token())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=authorization_code&grant_type=authorization_code&code={0}&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_verifier={VERIFIER}", c.code))
            },
            400,
            "invalid_request",
        ),
        (
            "client secret in the query string",
            |c| {
                c.http
                    .post(format!(
                        "{}/oauth/token?client_secret={}",
                        c.base,
                        Ctx::secret(&c.app)
                    ))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("client_id", c.app.id.as_str()),
                        ("code", c.code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
            },
            400,
            "invalid_request",
        ),
        (
            "code in the query string",
            |c| {
                c.app_basic(
                    c.http
                        .post(format!("{}/oauth/token?code={}", c.base, c.code)),
                )
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
            },
            400,
            "invalid_request",
        ),
        (
            "oversized body",
            |c| {
                c.exchange(&[("padding", "x")], &[])
                    .body("a=".to_owned() + &"x".repeat(20_000))
                    .header("content-type", "application/x-www-form-urlencoded")
            },
            413,
            "invalid_request",
        ),
        (
            "oversized parameter",
            |c| {
                c.app_basic(c.token()).form(&[
                    ("grant_type", "authorization_code"),
                    ("code", c.code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    ("state", &"s".repeat(5000)),
                ])
            },
            400,
            "invalid_request",
        ),
        (
            "wrong client secret",
            |c| {
                c.token()
                    .basic_auth(&c.app.id, Some("hgr_cs_wrong"))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", c.code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
            },
            401,
            "invalid_client",
        ),
        (
            "two client authentication methods",
            |c| c.exchange(&[("client_secret", "hgr_cs_x")], &[]),
            400,
            "invalid_request",
        ),
        (
            "no client authentication",
            |c| {
                c.token().form(&[
                    ("grant_type", "authorization_code"),
                    ("code", c.code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
            },
            401,
            "invalid_client",
        ),
        (
            "confidential client without its secret",
            |c| {
                c.token().form(&[
                    ("grant_type", "authorization_code"),
                    ("client_id", c.app.id.as_str()),
                    ("code", c.code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
            },
            401,
            "invalid_client",
        ),
        (
            "malformed basic credentials",
            |c| {
                c.token().header("authorization", "Basic !!!").form(&[
                    ("grant_type", "authorization_code"),
                    ("code", c.code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
            },
            401,
            "invalid_client",
        ),
        (
            "unknown client",
            |c| {
                c.token()
                    .basic_auth("hgr_ci_nobody", Some("hgr_cs_x"))
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", c.code.as_str()),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
            },
            401,
            "invalid_client",
        ),
        (
            "not a code",
            |c| c.exchange(&[("code", "hgr_rt_abc")], &[]),
            400,
            "invalid_grant",
        ),
    ]
}

/// Cases that present the refresh token (it must stay live).
fn refresh_cases() -> Vec<(&'static str, Build, u16, &'static str)> {
    vec![
        (
            "scope escalation on refresh",
            |c| c.refresh_with(&[("scope", "sandboxes:read admin")]),
            400,
            "invalid_scope",
        ),
        (
            "unknown scope on refresh",
            |c| c.refresh_with(&[("scope", "sandboxes:delete")]),
            400,
            "invalid_scope",
        ),
        (
            "malformed scope on refresh",
            |c| c.refresh_with(&[("scope", "sandboxes:read  openid")]),
            400,
            "invalid_scope",
        ),
        (
            "refresh token of another client",
            |c| {
                c.token()
                    .basic_auth(&c.other.id, Some(Ctx::secret(&c.other)))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", c.refresh.as_str()),
                    ])
            },
            400,
            "invalid_grant",
        ),
        (
            "access token as refresh token",
            |c| {
                c.app_basic(c.token()).form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.access.as_str()),
                ])
            },
            400,
            "invalid_grant",
        ),
        (
            "refresh_token left out",
            |c| {
                c.app_basic(c.token())
                    .form(&[("grant_type", "refresh_token")])
            },
            400,
            "invalid_request",
        ),
        (
            "refresh token in the query string",
            |c| {
                c.app_basic(c.http.post(format!(
                    "{}/oauth/token?refresh_token={}",
                    c.base, c.refresh
                )))
                .form(&[("grant_type", "refresh_token")])
            },
            400,
            "invalid_request",
        ),
        (
            "revoke a personal access token",
            |c| {
                c.app_basic(c.http.post(format!("{}/oauth/revoke", c.base)))
                    .form(&[("token", c.pat.as_str())])
            },
            400,
            "unsupported_token_type",
        ),
        (
            "revoke without a token",
            |c| {
                c.app_basic(c.http.post(format!("{}/oauth/revoke", c.base)))
                    .form(&[("token_type_hint", "refresh_token")])
            },
            400,
            "invalid_request",
        ),
        (
            "revoke with a wrong secret",
            |c| {
                c.http
                    .post(format!("{}/oauth/revoke", c.base))
                    .basic_auth(&c.app.id, Some("hgr_cs_no"))
                    .form(&[("token", c.refresh.as_str())])
            },
            401,
            "invalid_client",
        ),
        (
            "introspect without client authentication",
            |c| {
                c.http
                    .post(format!("{}/oauth/introspect", c.base))
                    .form(&[("token", c.refresh.as_str())])
            },
            401,
            "invalid_client",
        ),
        (
            "introspect as a public client",
            |c| {
                c.http.post(format!("{}/oauth/introspect", c.base)).form(&[
                    ("token", c.refresh.as_str()),
                    ("client_id", c.public.id.as_str()),
                ])
            },
            401,
            "invalid_client",
        ),
        (
            "device authorization without the device grant",
            |c| {
                c.http
                    .post(format!("{}/oauth/device_authorization", c.base))
                    .basic_auth(&c.no_device.id, Some(Ctx::secret(&c.no_device)))
                    .form(&[("scope", "sandboxes:read")])
            },
            400,
            "unauthorized_client",
        ),
        (
            "device authorization beyond the client's scopes",
            |c| {
                c.app_basic(
                    c.http
                        .post(format!("{}/oauth/device_authorization", c.base)),
                )
                .form(&[("scope", "admin")])
            },
            400,
            "invalid_scope",
        ),
        (
            "unknown device code",
            |c| {
                c.app_basic(c.token()).form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", "hgr_dc_nope"),
                ])
            },
            400,
            "invalid_grant",
        ),
        (
            "userinfo without a token",
            |c| c.http.get(format!("{}/oauth/userinfo", c.base)),
            401,
            "invalid_token",
        ),
        (
            "userinfo with a refresh token",
            |c| {
                c.http
                    .get(format!("{}/oauth/userinfo", c.base))
                    .bearer_auth(&c.refresh)
            },
            401,
            "invalid_token",
        ),
    ]
}

/// The facts the cases must not change.
async fn fingerprint(tp: &TestPlane, ctx: &Ctx) -> anyhow::Result<String> {
    let store = &tp.plane.state.store;
    let (grant, code) = store
        .oauth()
        .find_code(&SecretHash::of(&ctx.code))
        .await?
        .ok_or_else(|| anyhow::anyhow!("code"))?;
    let tokens = store.oauth().list_tokens_of_grant(grant).await?;
    let grant = store.oauth().get_grant(grant).await?;
    Ok(format!(
        "redeemed={:?} tokens={:?} grant={:?}",
        code.redeemed_at,
        tokens
            .iter()
            .map(|t| (t.kind, t.rotated_at, t.revoked_at))
            .collect::<Vec<_>>(),
        grant.map(|g| (g.scopes, g.revoked_at))
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_gets_its_error_and_changes_nothing() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let scopes = "sandboxes:read openid";
    let app = register(&tp, false, scopes, &[]).await?;
    let other = register(&tp, false, scopes, &[]).await?;
    let public = register(&tp, true, scopes, &[]).await?;
    let no_device = register(&tp, false, scopes, &["authorization_code", "refresh_token"]).await?;
    let first = exchange(&tp, &app, &code(&tp, &app, "sandboxes:read").await?).await?;
    let (_, pat) = tp
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&tp.admin_token),
            Some(serde_json::json!({"name": "p"})),
        )
        .await?;
    let mut ctx = Ctx {
        base: tp.base.clone(),
        http: reqwest::Client::new(),
        app: app.clone(),
        other,
        public,
        no_device,
        code: String::new(),
        refresh: first.body["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        access: first.body["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        pat: pat["token"].as_str().unwrap_or_default().to_owned(),
    };
    let mut failures = Vec::new();
    for (name, build, status, error) in code_cases() {
        ctx.code = code(&tp, &app, "sandboxes:read").await?;
        let before = fingerprint(&tp, &ctx).await?;
        let a = send(build(&ctx)).await?;
        if (a.status, a.error()) != (status, error) {
            failures.push(format!(
                "{name}: got {} {:?}, want {status} {error}",
                a.status, a.body
            ));
        }
        if a.headers.get("cache-control").and_then(|v| v.to_str().ok()) != Some("no-store") {
            failures.push(format!("{name}: no Cache-Control: no-store"));
        }
        if status == 401 && a.headers.get("www-authenticate").is_none() {
            failures.push(format!("{name}: 401 without WWW-Authenticate"));
        }
        if fingerprint(&tp, &ctx).await? != before {
            failures.push(format!("{name}: the store changed"));
        }
        // The code was not burnt: the right request still works.
        let good = exchange(&tp, &app, &ctx.code).await?;
        if good.status != 200 {
            failures.push(format!("{name}: the code no longer works: {:?}", good.body));
        }
    }
    ctx.code = code(&tp, &app, "sandboxes:read").await?;
    for (name, build, status, error) in refresh_cases() {
        let before = fingerprint(&tp, &ctx).await?;
        let a = send(build(&ctx)).await?;
        if (a.status, a.error()) != (status, error) {
            failures.push(format!(
                "{name}: got {} {:?}, want {status} {error}",
                a.status, a.body
            ));
        }
        if fingerprint(&tp, &ctx).await? != before {
            failures.push(format!("{name}: the store changed"));
        }
        let intro = post_form(
            &tp,
            "/oauth/introspect",
            Some(&app),
            true,
            &[("token", &ctx.refresh)],
        )
        .await?;
        if intro.body["active"] != true {
            failures.push(format!("{name}: the refresh token is no longer live"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_code_revokes_what_it_produced() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, false, "sandboxes:read", &[]).await?;
    let code = code(&tp, &app, "sandboxes:read").await?;
    let first = exchange(&tp, &app, &code).await?;
    assert_eq!(first.status, 200);
    let access = first.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = first.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access).await?.0, 200);
    let again = exchange(&tp, &app, &code).await?;
    assert_eq!((again.status, again.error()), (400, "invalid_grant"));
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access).await?.0, 401);
    let r = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        true,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await?;
    assert_eq!(r.error(), "invalid_grant");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_redemptions_of_one_code_have_one_winner() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, true, "sandboxes:read", &[]).await?;
    let code = code(&tp, &app, "sandboxes:read").await?;
    let attempts = (0..8).map(|_| exchange(&tp, &app, &code));
    let answers = futures::future::join_all(attempts).await;
    let ok = answers
        .iter()
        .filter(|a| a.as_ref().is_ok_and(|a| a.status == 200))
        .count();
    assert_eq!(ok, 1, "{answers:?}");
    for a in answers.iter().flatten().filter(|a| a.status != 200) {
        assert_eq!(a.error(), "invalid_grant");
    }
    // The losers were replays: the winner's tokens are revoked too.
    let winner = answers
        .iter()
        .flatten()
        .find(|a| a.status == 200)
        .and_then(|a| a.body["access_token"].as_str())
        .unwrap_or_default();
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", winner).await?.0, 401);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_refresh_token_revokes_the_grant() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, true, "sandboxes:read", &[]).await?;
    let t = exchange(&tp, &app, &code(&tp, &app, "sandboxes:read").await?).await?;
    let old = t.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        false,
        &[("grant_type", "refresh_token"), ("refresh_token", &old)],
    )
    .await?;
    assert_eq!(r.status, 200);
    let new_access = r.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let new_refresh = r.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Another device (a second app of the same person) keeps working.
    let second = exchange(&tp, &app, &code(&tp, &app, "sandboxes:read").await?).await?;
    let second_access = second.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let reuse = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        false,
        &[("grant_type", "refresh_token"), ("refresh_token", &old)],
    )
    .await?;
    assert_eq!((reuse.status, reuse.error()), (400, "invalid_grant"));
    // The whole grant is gone: every token of it, both families.
    for token in [&new_access, &second_access] {
        assert_eq!(api_get(&tp, "/api/v1/sandboxes", token).await?.0, 401);
    }
    let r = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        false,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &new_refresh),
        ],
    )
    .await?;
    assert_eq!(r.error(), "invalid_grant");
    let (_, apps) = api_get(&tp, "/api/v1/account/apps", &tp.admin_token).await?;
    assert_eq!(apps.as_array().map(Vec::len), Some(0));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_codes_and_pkce_downgrades_are_refused() -> anyhow::Result<()> {
    let mut config = TestConfig::default();
    config.oauth.code_ttl = std::time::Duration::ZERO;
    let tp = TestPlane::start_config(config).await?;
    let app = register(&tp, false, "sandboxes:read", &[]).await?;
    let expired = code(&tp, &app, "sandboxes:read").await?;
    let a = exchange(&tp, &app, &expired).await?;
    assert_eq!((a.status, a.error()), (400, "invalid_grant"));
    let (_, stored) = tp
        .plane
        .state
        .store
        .oauth()
        .find_code(&SecretHash::of(&expired))
        .await?
        .ok_or_else(|| anyhow::anyhow!("code"))?;
    assert_eq!(stored.redeemed_at, None);
    tp.shutdown().await?;

    let tp = TestPlane::start().await?;
    let conf = register(&tp, false, "sandboxes:read", &[]).await?;
    // A confidential client may skip PKCE; a verifier for such a code is a downgrade.
    let query = approve(
        &tp,
        &[
            ("response_type", "code"),
            ("client_id", &conf.id),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
        ],
    )
    .await?;
    let code = query
        .iter()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let a = exchange(&tp, &conf, &code).await?;
    assert_eq!(a.error(), "invalid_grant");
    let ok = post_form(
        &tp,
        "/oauth/token",
        Some(&conf),
        true,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await?;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    // A public client must use PKCE, S256 only; errors about the client or the redirect
    // URI stay on hangar's page.
    let public = register(&tp, true, "sandboxes:read", &[]).await?;
    let svc = &tp.plane.state.oauth;
    let no_pkce = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", public.id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
    ]);
    match svc.validate_authorization_request(&no_pkce).await {
        Err(e @ AuthorizeError::Redirect { .. }) => {
            let url = e.redirect_url(svc.issuer()).unwrap_or_default();
            assert!(
                url.starts_with("https://app.test/cb?error=invalid_request"),
                "{url}"
            );
            assert!(url.contains("state=s") && url.contains("iss="), "{url}");
        }
        other => panic!("{other:?}"),
    }
    let evil = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", public.id.as_str()),
        ("redirect_uri", "https://evil.test/cb"),
    ]);
    assert!(matches!(
        svc.validate_authorization_request(&evil).await,
        Err(AuthorizeError::Page(_))
    ));
    let unknown = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", "hgr_ci_nobody"),
        ("redirect_uri", REDIRECT),
    ]);
    assert!(matches!(
        svc.validate_authorization_request(&unknown).await,
        Err(AuthorizeError::Page(_))
    ));
    // deny() redirects with access_denied, state and iss.
    let challenge = hangar_oauth::pkce::CodeChallenge::s256_of(VERIFIER);
    let good = AuthorizationRequest::from_pairs([
        ("response_type", "code"),
        ("client_id", public.id.as_str()),
        ("redirect_uri", REDIRECT),
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let v = svc
        .validate_authorization_request(&good)
        .await
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let denied = svc.deny(&v);
    assert!(
        denied.starts_with("https://app.test/cb?error=access_denied"),
        "{denied}"
    );
    assert!(denied.contains("&state=s&iss="), "{denied}");
    tp.shutdown().await
}
