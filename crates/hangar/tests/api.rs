//! API behaviour: authentication, tenant walls, bad input as problem+json, the OpenAPI document.

use std::time::Duration;

use hangar_testkit::{images, TestPlane};
use reqwest::Method;
use serde_json::{json, Value};

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_required_and_checked() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let (status, body) = tp
        .request(Method::GET, "/api/v1/sandboxes", None, None)
        .await?;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(body["type"], "urn:hangar:problem:unauthenticated");
    assert_eq!(body["status"], 401);
    let forged = "hgr_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, _) = tp
        .request(Method::GET, "/api/v1/sandboxes", Some(forged), None)
        .await?;
    assert_eq!(status, 401);
    let (status, _) = tp
        .request(Method::GET, "/api/v1/sandboxes", Some("not-a-token"), None)
        .await?;
    assert_eq!(status, 401);
    // Health probes need no token.
    let (status, body) = tp.request(Method::GET, "/healthz", None, None).await?;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _) = tp.request(Method::GET, "/readyz", None, None).await?;
    assert_eq!(status, 200);

    // Tokens: create, use, revoke, refused after.
    let t = tp.admin_token.clone();
    let (status, created) = tp
        .request(
            Method::POST,
            "/api/v1/tokens",
            Some(&t),
            Some(json!({"name": "ci"})),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap_or_default().to_owned();
    let (status, me) = tp
        .request(Method::GET, "/api/v1/me", Some(&secret), None)
        .await?;
    assert_eq!(status, 200);
    assert_eq!(me["name"], "admin");
    let (_, list) = tp
        .request(Method::GET, "/api/v1/tokens", Some(&t), None)
        .await?;
    let text = list.to_string();
    assert!(!text.contains(&secret), "token list never shows secrets");
    let tid = created["id"].as_str().unwrap_or_default();
    let (status, _) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/tokens/{tid}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 204);
    let (status, _) = tp
        .request(Method::GET, "/api/v1/me", Some(&secret), None)
        .await?;
    assert_eq!(status, 401);
    // The secret is stored only hashed: not present in the database file.
    let db = std::fs::read(tp.data.path().join("hangar.db"))?;
    let wal = std::fs::read(tp.data.path().join("hangar.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(!bytes.windows(t.len()).any(|w| w == t.as_bytes()));
    }
    // The admin token file is 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&tp.plane.admin_token_path)?
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_walled_off() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let alice = tp.new_user("alice").await?;
    let bob = tp.new_user("bob").await?;
    let id = tp.running_sandbox(&alice, images::BUSYBOX).await?;
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/sandboxes/{id}"), None),
        (
            Method::POST,
            format!("/api/v1/sandboxes/{id}/exec"),
            Some(json!({"argv": ["true"]})),
        ),
        (Method::POST, format!("/api/v1/sandboxes/{id}/stop"), None),
        (Method::POST, format!("/api/v1/sandboxes/{id}/start"), None),
        (Method::DELETE, format!("/api/v1/sandboxes/{id}"), None),
        (Method::GET, format!("/api/v1/sandboxes/{id}/pty"), None),
    ] {
        let (status, body) = tp.request(method.clone(), &path, Some(&bob), body).await?;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (_, list) = tp
        .request(Method::GET, "/api/v1/sandboxes?all=true", Some(&bob), None)
        .await?;
    assert_eq!(list, json!([]));
    // Nothing bob did changed alice's sandbox.
    let v = tp.get(&alice, &id).await?;
    assert_eq!(v["state"], "running");
    // Non-admins cannot make users.
    let (status, body) = tp
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&bob),
            Some(json!({"name": "mallory"})),
        )
        .await?;
    assert_eq!(status, 403, "{body}");
    let (status, _) = tp
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&tp.admin_token),
            Some(json!({"name": "alice"})),
        )
        .await?;
    assert_eq!(status, 409);
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_problem_json_and_changes_nothing() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = id_of(&tp.create(&t, json!({"image": images::BUSYBOX})).await?);
    let before = tp
        .wait_state(&t, &id, Duration::from_secs(20), |s| s == "running")
        .await?;

    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"image": "no-such-image"}), 422, "unknown_image"),
        (
            json!({"image": images::BUSYBOX, "limits": {"memory_mib": 4_000_000_000u64}}),
            422,
            "invalid_request",
        ),
        (
            json!({"image": images::BUSYBOX, "limits": {"memory_mib": 1}}),
            422,
            "invalid_request",
        ),
        (
            json!({"image": images::BUSYBOX, "limits": {"cpu_millis": 0}}),
            422,
            "invalid_request",
        ),
        (
            json!({"image": images::BUSYBOX, "readiness_timeout_ms": 1}),
            422,
            "invalid_request",
        ),
        (
            json!({"image": images::BUSYBOX, "bogus": true}),
            422,
            "invalid_request",
        ),
        (
            json!({"image": images::BUSYBOX, "retention": {"on_failure": "keep", "ttl_s": 99999999}}),
            422,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, problem) = tp
            .request(
                Method::POST,
                "/api/v1/sandboxes",
                Some(&t),
                Some(body.clone()),
            )
            .await?;
        assert_eq!(got, status, "{body}: {problem}");
        assert_eq!(problem["code"], code, "{body}: {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    let (status, problem) = tp
        .raw(
            Method::POST,
            "/api/v1/sandboxes",
            Some(&t),
            "application/json",
            "{not json",
        )
        .await?;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "invalid_request");
    let (status, _) = tp
        .raw(
            Method::POST,
            "/api/v1/sandboxes",
            Some(&t),
            "text/plain",
            "{}",
        )
        .await?;
    assert_eq!(status, 415);
    let (status, _) = tp
        .request(Method::GET, "/api/v1/sandboxes/not-an-id", Some(&t), None)
        .await?;
    assert_eq!(status, 404);
    let (status, _) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{}", uuid::Uuid::now_v7()),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 404);
    let (status, p) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/exec"),
            Some(&t),
            Some(json!({"argv": []})),
        )
        .await?;
    assert_eq!(status, 422, "{p}");
    let (status, p) = tp
        .request(
            Method::POST,
            &format!("/api/v1/sandboxes/{id}/exec"),
            Some(&t),
            Some(json!({"argv": ["no-such-command"]})),
        )
        .await?;
    assert_eq!(status, 422, "{p}");
    assert_eq!(p["code"], "command_not_found");
    let (status, _) = tp
        .request(Method::GET, "/api/v1/nope", Some(&t), None)
        .await?;
    assert_eq!(status, 404);

    // Only the one sandbox exists, unchanged.
    let (_, list) = tp
        .request(Method::GET, "/api/v1/sandboxes?all=true", Some(&t), None)
        .await?;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let after = tp.get(&t, &id).await?;
    assert_eq!(before["state"], after["state"]);
    assert_eq!(before["boot"], after["boot"]);

    // A terminal on a destroyed sandbox.
    tp.request(
        Method::DELETE,
        &format!("/api/v1/sandboxes/{id}"),
        Some(&t),
        None,
    )
    .await?;
    tp.wait_state(&t, &id, Duration::from_secs(20), |s| s == "destroyed")
        .await?;
    let (status, p) = tp
        .request(
            Method::GET,
            &format!("/api/v1/sandboxes/{id}/pty"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 409, "{p}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_exit_codes_env_cwd_stdin_and_deadline() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let t = tp.admin_token.clone();
    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    let path = format!("/api/v1/sandboxes/{id}/exec");
    let (_, out) = tp
        .request(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({
                "argv": ["sh", "-c", "echo $GREETING; pwd; cat; echo oops >&2; exit 7"],
                "env": {"GREETING": "hello"}, "cwd": "/tmp", "stdin": "piped\n"
            })),
        )
        .await?;
    assert_eq!(out["stdout"], "hello\n/tmp\npiped\n");
    assert_eq!(out["stderr"], "oops\n");
    assert_eq!(out["exit_code"], 7);
    assert_eq!(out["timed_out"], false);
    let (_, out) = tp
        .request(
            Method::POST,
            &path,
            Some(&t),
            Some(json!({"argv": ["sleep", "30"], "timeout_ms": 300})),
        )
        .await?;
    assert_eq!(out["timed_out"], true, "{out}");
    assert!(out["duration_ms"].as_u64().is_some_and(|ms| ms < 5000));
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_routes() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let (status, doc) = tp
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await?;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for p in [
        "/api/v1/sandboxes",
        "/api/v1/sandboxes/{id}",
        "/api/v1/sandboxes/{id}/exec",
        "/api/v1/sandboxes/{id}/pty",
        "/api/v1/sandboxes/{id}/stop",
        "/api/v1/sandboxes/{id}/start",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Every documented path answers something other than "no such route".
    let t = tp.admin_token.clone();
    for p in paths {
        // The live stream never ends and the Prometheus exposition is text: their answer
        // head is enough (dropping the stream closes it).
        if ["/api/v1/stream", "/metrics"].contains(&p) {
            let resp = reqwest::Client::new()
                .get(format!("{}{p}", tp.base))
                .bearer_auth(&t)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await?;
            assert_eq!(resp.status(), 200, "{p}");
            continue;
        }
        let concrete = p.replace("{id}", &uuid::Uuid::now_v7().to_string());
        let (_, body) = tp.request(Method::GET, &concrete, Some(&t), None).await?;
        assert_ne!(body["detail"], "no such route", "{p}");
    }
    tp.shutdown().await
}
