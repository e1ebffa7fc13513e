//! hangar's authorization server end to end over HTTP: code + PKCE, tokens on hangar's own
//! API with their scopes, refresh rotation and reuse, revocation, introspection, the device
//! grant, OpenID Connect, metadata, key rotation, linked apps, PAT scopes, a restart, and
//! rate limits.

mod oauth_support;

use hangar_testkit::{TestConfig, TestPlane};
use oauth_support::*;
use reqwest::Method;
use serde_json::{json, Value};

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Checks an id_token's ES256 signature against the JWKS and returns its claims.
async fn verify_id_token(tp: &TestPlane, id_token: &str, aud: &str) -> anyhow::Result<Value> {
    let header = jsonwebtoken::decode_header(id_token)?;
    let kid = header.kid.clone().unwrap_or_default();
    let (_, jwks) = tp.request(Method::GET, "/oauth/jwks", None, None).await?;
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("kid {kid} not in the JWKS {jwks}"))?;
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        key["x"].as_str().unwrap_or_default(),
        key["y"].as_str().unwrap_or_default(),
    )?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[tp.base.as_str()]);
    Ok(jsonwebtoken::decode::<Value>(id_token, &decoding, &validation)?.claims)
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_tokens_refresh_revoke_and_introspect() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, false, "sandboxes:read openid profile", &[]).await?;
    let code = code(&tp, &app, "sandboxes:read openid profile").await?;
    assert!(code.starts_with("hgr_ac_"));

    let t = exchange(&tp, &app, &code).await?;
    assert_eq!(t.status, 200, "{:?}", t.body);
    assert_eq!(header(&t, "cache-control"), "no-store");
    assert_eq!(header(&t, "pragma"), "no-cache");
    assert_eq!(t.body["token_type"], "Bearer");
    assert_eq!(t.body["expires_in"], 3600);
    assert_eq!(t.body["scope"], "sandboxes:read openid profile");
    let access = t.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = t.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(access.starts_with("hgr_at_") && refresh.starts_with("hgr_rt_"));
    let claims = verify_id_token(
        &tp,
        t.body["id_token"].as_str().unwrap_or_default(),
        &app.id,
    )
    .await?;
    assert_eq!(claims["nonce"], "n-123");
    assert_eq!(claims["name"], "admin");
    assert_eq!(claims["iss"], tp.base.as_str());

    // The access token works on hangar's API within its scopes, and nowhere else.
    let (status, _) = api_get(&tp, "/api/v1/sandboxes", &access).await?;
    assert_eq!(status, 200);
    let (status, problem) = tp
        .request(
            Method::POST,
            "/api/v1/sandboxes",
            Some(&access),
            Some(json!({"image": "busybox"})),
        )
        .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _) = api_get(&tp, "/api/v1/credentials", &access).await?;
    assert_eq!(status, 403);
    let (status, _) = api_get(&tp, "/api/v1/users", &access).await?;
    assert_eq!(
        status, 403,
        "an admin's token without the admin scope is not admin"
    );
    let (status, _) = api_get(&tp, "/api/v1/tokens", &access).await?;
    assert_eq!(status, 403, "an app cannot manage the person's tokens");
    let (status, me) = api_get(&tp, "/api/v1/me", &access).await?;
    assert_eq!(
        (status, me["scope"].as_str()),
        (200, Some("sandboxes:read openid profile"))
    );

    // userinfo.
    let info = send(
        reqwest::Client::new()
            .get(format!("{}/oauth/userinfo", tp.base))
            .bearer_auth(&access),
    )
    .await?;
    assert_eq!(info.status, 200, "{:?}", info.body);
    assert_eq!(info.body["preferred_username"], "admin");

    // Introspection: active for its own client, inactive for nonsense.
    let intro = post_form(
        &tp,
        "/oauth/introspect",
        Some(&app),
        true,
        &[("token", &access)],
    )
    .await?;
    assert_eq!(intro.status, 200);
    assert_eq!(intro.body["active"], true);
    assert_eq!(intro.body["client_id"], app.id.as_str());
    assert_eq!(intro.body["token_type"], "Bearer");
    let intro = post_form(
        &tp,
        "/oauth/introspect",
        Some(&app),
        false,
        &[("token", "hgr_at_nope")],
    )
    .await?;
    assert_eq!(intro.body, json!({"active": false}));

    // Refresh (client_secret_post this time): new pair, narrower scope allowed.
    let r = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        false,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("scope", "sandboxes:read"),
        ],
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["scope"], "sandboxes:read");
    assert!(r.body.get("id_token").is_none());
    let access2 = r.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh2 = r.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(refresh2, refresh);
    // The rotated refresh token keeps the original scope.
    let r3 = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        true,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh2),
        ],
    )
    .await?;
    assert_eq!(
        r3.body["scope"], "sandboxes:read openid profile",
        "{:?}",
        r3.body
    );
    let access3 = r3.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh3 = r3.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // Revocation (RFC 7009): an access token stops working; unknown tokens answer 200.
    let rv = post_form(
        &tp,
        "/oauth/revoke",
        Some(&app),
        true,
        &[("token", &access2)],
    )
    .await?;
    assert_eq!(rv.status, 200);
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access2).await?.0, 401);
    let rv = post_form(
        &tp,
        "/oauth/revoke",
        Some(&app),
        true,
        &[("token", "hgr_rt_unknown")],
    )
    .await?;
    assert_eq!(rv.status, 200);
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access3).await?.0, 200);
    // Revoking the refresh token revokes what descends from the same code.
    let rv = post_form(
        &tp,
        "/oauth/revoke",
        Some(&app),
        true,
        &[("token", &refresh3), ("token_type_hint", "refresh_token")],
    )
    .await?;
    assert_eq!(rv.status, 200);
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access3).await?.0, 401);
    let intro = post_form(
        &tp,
        "/oauth/introspect",
        Some(&app),
        true,
        &[("token", &refresh3)],
    )
    .await?;
    assert_eq!(intro.body["active"], false);
    tp.shutdown().await
}

async fn poll_device(tp: &TestPlane, client: &Client, device_code: &str) -> anyhow::Result<Answer> {
    post_form(
        tp,
        "/oauth/token",
        Some(client),
        false,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn device_grant_for_a_public_client() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let tv = register(&tp, true, "sandboxes:read", &[]).await?;
    let d = post_form(
        &tp,
        "/oauth/device_authorization",
        Some(&tv),
        false,
        &[("scope", "sandboxes:read")],
    )
    .await?;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert_eq!(header(&d, "cache-control"), "no-store");
    let device_code = d.body["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let user_code = d.body["user_code"].as_str().unwrap_or_default().to_owned();
    assert!(device_code.starts_with("hgr_dc_"));
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert_eq!(
        d.body["verification_uri"],
        format!("{}/oauth/device", tp.base)
    );
    assert_eq!(d.body["interval"], 5);
    let poll = || poll_device(&tp, &tv, &device_code);
    let p = poll().await?;
    assert_eq!((p.status, p.error()), (400, "authorization_pending"));
    let p = poll().await?;
    assert_eq!(
        (p.status, p.error()),
        (400, "slow_down"),
        "polled within the interval"
    );

    // The person approves on another screen (the page calls the service).
    let view = tp
        .plane
        .state
        .oauth
        .device_request(&user_code.to_lowercase())
        .await?;
    assert_eq!(view.client_id, tv.id);
    let principal = admin(&tp).await?;
    tp.plane
        .state
        .oauth
        .approve_device(&principal, &user_code)
        .await?;
    assert!(
        tp.plane
            .state
            .oauth
            .approve_device(&principal, &user_code)
            .await
            .is_err(),
        "a user code is answered once"
    );
    // The device waits its (raised) interval, then gets tokens. Move the last poll back
    // instead of sleeping 10 s: the store is the state.
    let store = &tp.plane.state.store;
    let hash = hangar_oauth::SecretHash::of(&device_code);
    let rec = store
        .oauth()
        .find_device(&hash)
        .await?
        .ok_or_else(|| anyhow::anyhow!("device"))?;
    assert_eq!(rec.interval_s, 10);
    store
        .oauth()
        .record_poll(
            &hash,
            rec.version,
            rec.interval_s,
            hangar_core::Timestamp::from_unix_ms(0),
        )
        .await?;
    let p = poll().await?;
    assert_eq!(p.status, 200, "{:?}", p.body);
    let access = p.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access).await?.0, 200);
    let p = poll().await?;
    assert_eq!(p.error(), "invalid_grant", "a device code is redeemed once");

    // Denied requests answer access_denied.
    let d = post_form(&tp, "/oauth/device_authorization", Some(&tv), false, &[]).await?;
    let code2 = d.body["device_code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let user2 = d.body["user_code"].as_str().unwrap_or_default().to_owned();
    tp.plane.state.oauth.deny_device(&principal, &user2).await?;
    let p = post_form(
        &tp,
        "/oauth/token",
        Some(&tv),
        false,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &code2),
        ],
    )
    .await?;
    assert_eq!(p.error(), "access_denied");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_jwks_and_key_rotation() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let (status, doc) = tp.request(Method::GET, path, None, None).await?;
        assert_eq!(status, 200);
        assert_eq!(doc["issuer"], tp.base.as_str());
        assert_eq!(doc["token_endpoint"], format!("{}/oauth/token", tp.base));
        assert_eq!(
            doc["authorization_endpoint"],
            format!("{}/oauth/authorize", tp.base)
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert!(doc["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("urn:ietf:params:oauth:grant-type:device_code"))));
    }
    let (_, jwks) = tp.request(Method::GET, "/oauth/jwks", None, None).await?;
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0]["kty"].as_str(), keys[0]["alg"].as_str()),
        (Some("EC"), Some("ES256"))
    );
    assert!(keys[0].get("d").is_none(), "no private part is published");
    let old_kid = keys[0]["kid"].as_str().unwrap_or_default().to_owned();

    let app = register(&tp, true, "openid", &[]).await?;
    let before = exchange(&tp, &app, &code(&tp, &app, "openid").await?).await?;
    let new_kid = tp.plane.state.oauth.rotate_signing_key().await?;
    let (_, jwks) = tp.request(Method::GET, "/oauth/jwks", None, None).await?;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(|k| k["kid"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        kids,
        vec![new_kid.as_str(), old_kid.as_str()],
        "old key still published"
    );
    // Tokens signed before still verify; new ones use the new key.
    verify_id_token(
        &tp,
        before.body["id_token"].as_str().unwrap_or_default(),
        &app.id,
    )
    .await?;
    let after = exchange(&tp, &app, &code(&tp, &app, "openid").await?).await?;
    let id_token = after.body["id_token"].as_str().unwrap_or_default();
    assert_eq!(
        jsonwebtoken::decode_header(id_token)?.kid.as_deref(),
        Some(new_kid.as_str())
    );
    verify_id_token(&tp, id_token, &app.id).await?;
    // The private keys are sealed in the store, not readable there.
    for key in tp.plane.state.store.oauth().list_signing_keys().await? {
        assert!(!String::from_utf8_lossy(&key.sealed).contains("PRIVATE"));
    }
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn linked_apps_and_admin_api() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, true, "sandboxes:read", &[]).await?;
    let t = exchange(&tp, &app, &code(&tp, &app, "sandboxes:read").await?).await?;
    let access = t.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, apps) = api_get(&tp, "/api/v1/account/apps", &tp.admin_token).await?;
    assert_eq!(status, 200);
    assert_eq!(apps.as_array().map(Vec::len), Some(1));
    assert_eq!(apps[0]["client_id"], app.id.as_str());
    assert_eq!(apps[0]["scope"], "sandboxes:read");
    let grant = apps[0]["id"].as_str().unwrap_or_default().to_owned();
    // The app itself cannot list or revoke the person's linked apps.
    assert_eq!(api_get(&tp, "/api/v1/account/apps", &access).await?.0, 403);
    // Another user cannot revoke it.
    let bob = tp.new_user("bob").await?;
    let (status, _) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/account/apps/{grant}"),
            Some(&bob),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    let (status, _) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/account/apps/{grant}"),
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &access).await?.0, 401);
    let refresh = t.body["refresh_token"].as_str().unwrap_or_default();
    let r = post_form(
        &tp,
        "/oauth/token",
        Some(&app),
        false,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await?;
    assert_eq!(r.error(), "invalid_grant");

    // Admin API: non-admins are refused; clients are listed without secrets and removed.
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/oauth/clients",
            Some(&bob),
            Some(json!({"name": "x", "redirect_uris": [REDIRECT], "scope": "openid"})),
        )
        .await?;
    assert_eq!(status, 403);
    let conf = register(&tp, false, "openid", &[]).await?;
    let (_, list) = api_get(&tp, "/api/v1/oauth/clients", &tp.admin_token).await?;
    assert!(!list
        .to_string()
        .contains(conf.secret.as_deref().unwrap_or("-")));
    assert!(!list.to_string().contains("argon2"));
    let (status, _) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/oauth/clients/{}", conf.id),
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, problem) = tp
        .request(
            Method::POST,
            "/api/v1/oauth/clients",
            Some(&tp.admin_token),
            Some(json!({"name": "x", "redirect_uris": ["http://evil.test/cb"], "scope": "openid"})),
        )
        .await?;
    assert_eq!(status, 422, "{problem}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_access_tokens_carry_scopes() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let (status, created) = tp
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&tp.admin_token),
            Some(json!({"name": "ro", "scope": "sandboxes:read", "expires_in_s": 2_592_000})),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scope"], "sandboxes:read");
    assert!(created["expires_at"].is_number() || created["expires_at"].is_string());
    let ro = created["token"].as_str().unwrap_or_default().to_owned();
    assert_eq!(api_get(&tp, "/api/v1/sandboxes", &ro).await?.0, 200);
    let (status, problem) = tp
        .request(
            Method::POST,
            "/api/v1/sandboxes",
            Some(&ro),
            Some(json!({"image": "busybox"})),
        )
        .await?;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    // A limited token cannot mint a broader one.
    for body in [json!({"name": "x"}), json!({"name": "x", "scope": "admin"})] {
        let (status, _) = tp
            .request(Method::POST, "/api/v1/tokens", Some(&ro), Some(body))
            .await?;
        assert_eq!(status, 403);
    }
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&ro),
            Some(json!({"name": "x", "scope": "sandboxes:read"})),
        )
        .await?;
    assert_eq!(status, 201);
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&tp.admin_token),
            Some(json!({"name": "x", "scope": "nope"})),
        )
        .await?;
    assert_eq!(status, 422);
    let (_, list) = api_get(&tp, "/api/v1/tokens", &tp.admin_token).await?;
    assert!(list
        .as_array()
        .is_some_and(|l| l.iter().any(|t| t["scope"] == "sandboxes:read")));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn codes_and_tokens_survive_a_restart() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let app = register(&tp, false, "sandboxes:read openid", &[]).await?;
    let t = exchange(&tp, &app, &code(&tp, &app, "sandboxes:read").await?).await?;
    let refresh = t.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let access = t.body["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let pending = code(&tp, &app, "sandboxes:read openid").await?;

    // A second control plane over the same data directory, on its own port.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let again = hangar_server::local::LocalPlane::open(hangar_server::local::LocalConfig {
        metrics: Default::default(),
        data_dir: tp.data.path().to_owned(),
        store_url: None,
        guest_agent: hangar_testkit::guest_agent(),
        images_dir: Some(tp.data.path().join("images")),
        sandbox: Default::default(),
        connect: Default::default(),
        providers_dir: None,
        signin: Default::default(),
        oauth: hangar_server::oauth::OAuthConfig {
            issuer: base.clone(),
            ..Default::default()
        },
        telemetry: Default::default(),
        events: Default::default(),
    })
    .await?;
    let app2 = hangar_server::router(again.state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app2).await;
    });
    let http = reqwest::Client::new();
    let (status, _) = (
        http.get(format!("{base}/api/v1/sandboxes"))
            .bearer_auth(&access)
            .send()
            .await?
            .status()
            .as_u16(),
        (),
    );
    assert_eq!(
        status, 200,
        "an access token issued before the restart works"
    );
    let secret = app.secret.clone().unwrap_or_default();
    let r = send(
        http.post(format!("{base}/oauth/token"))
            .basic_auth(&app.id, Some(&secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
            ]),
    )
    .await?;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let c = send(
        http.post(format!("{base}/oauth/token"))
            .basic_auth(&app.id, Some(&secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", pending.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ]),
    )
    .await?;
    assert_eq!(c.status, 200, "{:?}", c.body);
    // The id_token signed after the restart uses the same, stored key.
    let (_, jwks) = tp.request(Method::GET, "/oauth/jwks", None, None).await?;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    server.abort();
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_is_rate_limited() -> anyhow::Result<()> {
    let mut config = TestConfig::default();
    config.oauth.rate = hangar_server::oauth::RateConfig {
        per_client_per_s: 1,
        per_addr_per_s: 1000,
        burst: 3,
    };
    let tp = TestPlane::start_config(config).await?;
    let app = register(&tp, true, "openid", &[]).await?;
    let mut limited = None;
    for _ in 0..10 {
        let a = post_form(
            &tp,
            "/oauth/token",
            Some(&app),
            false,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "hgr_rt_x"),
            ],
        )
        .await?;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        assert_eq!(a.error(), "invalid_grant");
    }
    let a = limited.ok_or_else(|| anyhow::anyhow!("never limited"))?;
    assert!(header(&a, "retry-after")
        .parse::<u64>()
        .is_ok_and(|s| s >= 1));
    assert_eq!(header(&a, "cache-control"), "no-store");
    // Per address too.
    let mut config = TestConfig::default();
    config.oauth.rate = hangar_server::oauth::RateConfig {
        per_client_per_s: 1000,
        per_addr_per_s: 1,
        burst: 2,
    };
    let tp2 = TestPlane::start_config(config).await?;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let a = post_form(
            &tp2,
            "/oauth/device_authorization",
            None,
            false,
            &[("client_id", "nobody")],
        )
        .await?;
        statuses.push(a.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    tp2.shutdown().await?;
    tp.shutdown().await
}
