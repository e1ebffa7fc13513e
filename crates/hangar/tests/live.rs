//! Live updates (`GET /api/v1/stream`, server-sent events read with `eventsource-stream`),
//! the event log (`GET /api/v1/events`) and the Prometheus exposition (`GET /metrics`,
//! parsed with a strict line check), against the real plane and real
//! runc sandboxes.

use std::collections::HashMap;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::stream::BoxStream;
use futures::StreamExt;
use hangar_server::telemetry::MetricsConfig;
use hangar_testkit::{images, TestConfig, TestPlane};
use reqwest::Method;
use serde_json::{json, Value};

/// Longest wait for one stream event.
const EVENT_DEADLINE: Duration = Duration::from_secs(30);

type Events = BoxStream<'static, Result<Event, String>>;

/// Opens `GET /api/v1/stream` with a bearer token or, with `cookie`, a session cookie.
/// Returns once the response head arrived (the subscription exists from then on).
async fn open_stream(
    tp: &TestPlane,
    token: Option<&str>,
    cookie: Option<&str>,
) -> anyhow::Result<Events> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut req = http
        .get(format!("{}/api/v1/stream", tp.base))
        .header("accept", "text/event-stream");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), req.send()).await??;
    anyhow::ensure!(resp.status() == 200, "stream answered {}", resp.status());
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        ctype.starts_with("text/event-stream"),
        "content type {ctype}"
    );
    Ok(resp
        .bytes_stream()
        .eventsource()
        .map(|r| r.map_err(|e| e.to_string()))
        .boxed())
}

/// The next named event (`None` when the stream ended), within [`EVENT_DEADLINE`].
async fn next_event(events: &mut Events) -> anyhow::Result<Option<(String, Value)>> {
    match tokio::time::timeout(EVENT_DEADLINE, events.next()).await {
        Err(_) => anyhow::bail!("no stream event within {EVENT_DEADLINE:?}"),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => anyhow::bail!("stream error: {e}"),
        Ok(Some(Ok(ev))) => Ok(Some((ev.event, serde_json::from_str(&ev.data)?))),
    }
}

/// Reads events until `stop` holds for one; returns all read, that one last.
async fn read_until(
    events: &mut Events,
    what: &str,
    stop: impl Fn(&str, &Value) -> bool,
) -> anyhow::Result<Vec<(String, Value)>> {
    let mut seen = Vec::new();
    loop {
        let Some((name, data)) = next_event(events).await? else {
            anyhow::bail!("stream ended before {what}; saw {seen:?}");
        };
        let done = stop(&name, &data);
        seen.push((name, data));
        if done {
            return Ok(seen);
        }
    }
}

fn is_sandbox(name: &str, data: &Value, id: &str, state: &str) -> bool {
    name == "sandbox" && data["id"] == id && data["state"] == state
}

fn stages(v: &Value) -> Vec<String> {
    v["boot"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["stage"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_owned()
}

/// The `sandbox` events about `id`, as (state, stages).
fn sandbox_updates(seen: &[(String, Value)], id: &str) -> Vec<(String, Vec<String>)> {
    seen.iter()
        .filter(|(name, data)| name == "sandbox" && data["id"] == id)
        .map(|(_, data)| {
            (
                data["state"].as_str().unwrap_or_default().to_owned(),
                stages(data),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_changes_stream_in_order_to_their_owner_and_admins_only() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let alice = tp.new_user("alice").await?;
    let bob = tp.new_user("bob").await?;
    let mut admin_stream = open_stream(&tp, Some(&tp.admin_token), None).await?;
    let mut alice_stream = open_stream(&tp, Some(&alice), None).await?;
    let mut bob_stream = open_stream(&tp, Some(&bob), None).await?;

    let created = tp.create(&alice, json!({"image": images::BUSYBOX})).await?;
    let id = id_of(&created);
    let seen = read_until(&mut alice_stream, "alice's sandbox running", |n, d| {
        is_sandbox(n, d, &id, "running")
    })
    .await?;
    let updates = sandbox_updates(&seen, &id);
    // creating (stage created), one update per boot stage, then running; nothing else.
    let expected_stages = ["created", "rootfs_ready", "process_started", "agent_ready"];
    let mut expected = Vec::new();
    for n in 1..=expected_stages.len() {
        expected.push((
            "creating".to_owned(),
            expected_stages[..n]
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
        ));
    }
    expected.push((
        "running".to_owned(),
        expected_stages.iter().map(|s| (*s).to_owned()).collect(),
    ));
    assert_eq!(updates, expected, "{seen:?}");
    assert!(
        seen.iter().all(|(name, _)| name == "sandbox"),
        "a user gets no admin events: {seen:?}"
    );
    // The last update is what GET answers.
    let got = tp.get(&alice, &id).await?;
    assert_eq!(seen.last().map(|(_, d)| d), Some(&got));

    // The admin sees the same updates.
    let admin_seen = read_until(
        &mut admin_stream,
        "alice's sandbox running (admin)",
        |n, d| is_sandbox(n, d, &id, "running"),
    )
    .await?;
    assert_eq!(sandbox_updates(&admin_seen, &id), expected);

    // Bob sees none of it: the bus keeps publish order, so his own sandbox's first update is
    // the first thing his stream shows.
    let bobs = id_of(&tp.create(&bob, json!({"image": images::BUSYBOX})).await?);
    let (name, data) = next_event(&mut bob_stream)
        .await?
        .ok_or_else(|| anyhow::anyhow!("bob's stream ended"))?;
    assert_eq!(name, "sandbox");
    assert_eq!(data["id"], bobs.as_str(), "bob saw {data}");
    assert_eq!(data["state"], "creating");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_see_failures_with_their_stage_live_and_in_the_event_log() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let alice = tp.new_user("alice").await?;
    let mut admin_stream = open_stream(&tp, Some(&tp.admin_token), None).await?;
    let mut alice_stream = open_stream(&tp, Some(&alice), None).await?;

    // The `hang` image never starts its guest agent: failed at process_started.
    let id = id_of(
        &tp.create(
            &alice,
            json!({"image": images::HANG, "readiness_timeout_ms": 1500}),
        )
        .await?,
    );
    let seen = read_until(&mut admin_stream, "the failure event", |n, d| {
        n == "event" && d["sandbox_id"] == id.as_str()
    })
    .await?;
    let (_, event) = seen.last().cloned().unwrap_or_default();
    assert_eq!(event["kind"], "sandbox_failed", "{event}");
    assert_eq!(event["severity"], "error");
    assert_eq!(event["stage"], "process_started");
    assert_eq!(event["node_id"], tp.get(&alice, &id).await?["node"]);
    let alice_id = tp
        .request(Method::GET, "/api/v1/account", Some(&alice), None)
        .await?
        .1["id"]
        .clone();
    assert_eq!(event["user_id"], alice_id);
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("process_started")),
        "{event}"
    );
    // The failed state came first, as a sandbox update.
    assert!(
        seen.iter().any(|(n, d)| is_sandbox(n, d, &id, "failed")),
        "{seen:?}"
    );

    // Alice sees her sandbox fail, but never the admin-only event: after the failure, her
    // next sandbox's first update arrives with no `event` in between.
    read_until(&mut alice_stream, "alice's sandbox failed", |n, d| {
        is_sandbox(n, d, &id, "failed")
    })
    .await?;
    let next = id_of(&tp.create(&alice, json!({"image": images::BUSYBOX})).await?);
    let between = read_until(&mut alice_stream, "alice's next sandbox", |n, d| {
        is_sandbox(n, d, &next, "creating")
    })
    .await?;
    assert!(
        between.iter().all(|(n, _)| n == "sandbox"),
        "alice got {between:?}"
    );

    // The event log: newest first, admins only, checked parameters.
    let (status, events) = tp
        .request(Method::GET, "/api/v1/events", Some(&tp.admin_token), None)
        .await?;
    assert_eq!(status, 200, "{events}");
    let first = &events[0];
    assert_eq!(first["id"], event["id"]);
    assert_eq!(first, &event, "the log and the stream agree");
    let (status, _) = tp
        .request(Method::GET, "/api/v1/events", Some(&alice), None)
        .await?;
    assert_eq!(status, 403);
    let (status, _) = tp
        .request(Method::GET, "/api/v1/events", None, None)
        .await?;
    assert_eq!(status, 401);
    for bad in [
        "limit=0",
        "limit=501",
        "limit=ten",
        "before=yesterday",
        "before=0190aaaa-0000-7000-8000-000000000000",
    ] {
        let (status, body) = tp
            .request(
                Method::GET,
                &format!("/api/v1/events?{bad}"),
                Some(&tp.admin_token),
                None,
            )
            .await?;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // Paging past the newest event leaves it out.
    let (status, older) = tp
        .request(
            Method::GET,
            &format!(
                "/api/v1/events?limit=5&before={}",
                event["id"].as_str().unwrap_or_default()
            ),
            Some(&tp.admin_token),
            None,
        )
        .await?;
    assert_eq!(status, 200);
    assert!(
        older
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["id"] != event["id"])),
        "{older}"
    );
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_opens_the_stream_and_shutdown_ends_it() -> anyhow::Result<()> {
    let mut tp = TestPlane::start().await?;
    // Sign in through the token form, as the dashboard does: a browser session cookie.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = http
        .post(format!("{}/login/token", tp.base))
        .header("origin", tp.base.as_str())
        .form(&[("token", tp.admin_token.as_str()), ("return_to", "/")])
        .send()
        .await?;
    assert_eq!(resp.status(), 303);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .unwrap_or_default()
        .to_owned();
    assert!(cookie.starts_with("hangar_session="), "{cookie}");
    // EventSource sends no Origin on a same-origin GET: the cookie alone is enough.
    let mut cookie_stream = open_stream(&tp, None, Some(&cookie)).await?;
    let mut bearer_stream = open_stream(&tp, Some(&tp.admin_token), None).await?;
    let id = tp.running_sandbox(&tp.admin_token, images::BUSYBOX).await?;
    read_until(
        &mut cookie_stream,
        "the sandbox running (cookie)",
        |n, d| is_sandbox(n, d, &id, "running"),
    )
    .await?;
    // A stream without credentials is refused.
    let resp = http
        .get(format!("{}/api/v1/stream", tp.base))
        .send()
        .await?;
    assert_eq!(resp.status(), 401);

    // Open streams do not hold a graceful shutdown: it finishes, and both streams end
    // cleanly (no error) after what was already sent.
    tp.shutdown_api(Duration::from_secs(15)).await?;
    for stream in [&mut cookie_stream, &mut bearer_stream] {
        while let Some((name, data)) = next_event(stream).await? {
            assert_eq!(name, "sandbox", "{data}");
        }
    }
    tp.shutdown().await
}

/// One sample of an exposition: name, labels, value.
type Sample = (String, HashMap<String, String>, f64);

/// One parsed exposition, every line checked strictly against the OpenMetrics text format:
/// `# HELP` / `# TYPE` / `# UNIT` lines, sample lines `name{label="value",...} value` whose
/// family has a `# TYPE`, and `# EOF` last. (`prometheus-parse` was tried and splits label
/// values holding `{`, as route templates do; the format is simple enough to check here.)
struct Exposition {
    text: String,
    samples: Vec<Sample>,
}

impl Exposition {
    fn parse(text: String) -> anyhow::Result<Self> {
        let sample_re = regex::Regex::new(r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$"#)?;
        let label_re = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?"#)?;
        let mut typed: Vec<String> = Vec::new();
        let mut samples = Vec::new();
        let lines: Vec<&str> = text.lines().collect();
        anyhow::ensure!(lines.last() == Some(&"# EOF"), "no # EOF at the end");
        for line in &lines[..lines.len() - 1] {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_default();
                anyhow::ensure!(
                    ["counter", "gauge", "histogram", "info"].contains(&kind),
                    "unknown type in {line}"
                );
                typed.push(name.to_owned());
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            let caps = sample_re
                .captures(line)
                .ok_or_else(|| anyhow::anyhow!("not a sample line: {line:?}"))?;
            let name = caps[1].to_owned();
            anyhow::ensure!(
                typed.iter().any(|t| name.starts_with(t.as_str())),
                "sample {name} has no TYPE"
            );
            anyhow::ensure!(
                name.starts_with("hangar_"),
                "{name} lacks the hangar_ prefix"
            );
            let mut labels = HashMap::new();
            if let Some(inner) = caps.get(2) {
                let mut covered = 0;
                for l in label_re.captures_iter(inner.as_str()) {
                    let whole = l.get(0).map_or(0..0, |m| m.range());
                    anyhow::ensure!(whole.start == covered, "bad labels in {line:?}");
                    covered = whole.end;
                    labels.insert(l[1].to_owned(), l[2].to_owned());
                }
                anyhow::ensure!(covered == inner.as_str().len(), "bad labels in {line:?}");
            }
            let value: f64 = caps[3]
                .parse()
                .map_err(|e| anyhow::anyhow!("bad value in {line:?}: {e}"))?;
            samples.push((name, labels, value));
        }
        Ok(Self { text, samples })
    }

    /// The value of the sample `metric` whose labels include `labels` (`None`: no such
    /// series). For a histogram, pass `NAME_count`.
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(name, have, _)| {
                name == metric
                    && labels
                        .iter()
                        .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }
}

async fn scrape(tp: &TestPlane, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let http = reqwest::Client::new();
    let mut req = http.get(format!("{}/metrics", tp.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await?;
    if status == 200 {
        assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    }
    Ok((status, text))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_boots_failures_and_the_pool() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let alice = tp.new_user("alice").await?;
    let t = tp.admin_token.clone();
    // Only an admin token may scrape.
    assert_eq!(scrape(&tp, None).await?.0, 401);
    assert_eq!(scrape(&tp, Some(&alice)).await?.0, 403);

    let id = tp.running_sandbox(&t, images::BUSYBOX).await?;
    for _ in 0..3 {
        tp.get(&t, &id).await?;
    }
    let (status, _) = tp
        .request(Method::GET, "/no/such/route/zz-raw-path-zz", Some(&t), None)
        .await?;
    assert_eq!(status, 404);
    let failed = id_of(
        &tp.create(
            &t,
            json!({"image": images::HANG, "readiness_timeout_ms": 1500}),
        )
        .await?,
    );
    tp.wait_state(&t, &failed, Duration::from_secs(15), |s| s == "failed")
        .await?;

    let (status, text) = scrape(&tp, Some(&t)).await?;
    assert_eq!(status, 200, "{text}");
    let m = Exposition::parse(text)?;
    // Requests by route template: the sandbox id never becomes a label value.
    let gets = m
        .value(
            "hangar_http_request_duration_seconds_count",
            &[
                ("route", "/api/v1/sandboxes/{id}"),
                ("method", "GET"),
                ("status", "200"),
            ],
        )
        .unwrap_or_default();
    assert!(gets >= 3.0, "GET /api/v1/sandboxes/{{id}} counted {gets}");
    assert_eq!(
        m.value(
            "hangar_http_request_duration_seconds_count",
            &[("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(
        m.value(
            "hangar_http_request_duration_seconds_count",
            &[
                ("route", "/api/v1/sandboxes"),
                ("method", "POST"),
                ("status", "202")
            ]
        )
        .is_some_and(|n| n >= 2.0),
        "{}",
        m.text
    );
    assert!(!m.text.contains(&id), "a sandbox id leaked into a label");
    assert!(
        !m.text.contains("zz-raw-path-zz"),
        "a raw path leaked into a label"
    );
    // Boots and failures.
    assert_eq!(
        m.value("hangar_sandbox_create_to_ready_seconds_count", &[]),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "hangar_sandbox_boot_failures_total",
            &[("stage", "process_started"), ("kind", "boot_timeout")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("hangar_sandboxes", &[("state", "running")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("hangar_sandboxes", &[("state", "failed")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("hangar_sandboxes", &[("state", "stopped")]),
        Some(0.0)
    );
    // The pool, read at scrape time.
    assert_eq!(m.value("hangar_store_connections_max", &[]), Some(8.0));
    let idle = m.value("hangar_store_connections", &[("state", "idle")]);
    let active = m.value("hangar_store_connections", &[("state", "active")]);
    assert!(
        idle.zip(active)
            .is_some_and(|(i, a)| i + a >= 1.0 && i + a <= 8.0),
        "{idle:?} {active:?}"
    );
    assert_eq!(
        m.value(
            "hangar_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    // The scrape itself is counted by the next one.
    let again = Exposition::parse(scrape(&tp, Some(&t)).await?.1)?;
    assert!(
        again
            .value(
                "hangar_http_request_duration_seconds_count",
                &[("route", "/metrics"), ("status", "200")]
            )
            .is_some_and(|n| n >= 1.0),
        "{}",
        again.text
    );
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn public_metrics_need_no_token_and_connect_outcomes_are_counted() -> anyhow::Result<()> {
    let tp = TestPlane::start_config(TestConfig {
        telemetry: MetricsConfig { public: true },
        connect: hangar_server::connect::ConnectConfig {
            browser_image: images::BUSYBOX.to_owned(),
            browser_session: Vec::new(),
            ..Default::default()
        },
        ..TestConfig::default()
    })
    .await?;
    let t = tp.admin_token.clone();
    let mut admin_stream = open_stream(&tp, Some(&t), None).await?;
    // A connect session for a token-from-the-environment flow waits for the person; cancel it.
    let started = tp.start_connect(&t, "claude_code", Some("token")).await?;
    let session = id_of(&started);
    let (status, body) = tp
        .request(
            Method::DELETE,
            &format!("/api/v1/connect/{session}"),
            Some(&t),
            None,
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let seen = read_until(&mut admin_stream, "the connect event", |n, d| {
        n == "event" && d["connect_session_id"] == session.as_str()
    })
    .await?;
    let (_, event) = seen.last().cloned().unwrap_or_default();
    assert_eq!(event["kind"], "connect_session");
    assert_eq!(event["severity"], "warning");

    let (status, text) = scrape(&tp, None).await?;
    assert_eq!(status, 200);
    let m = Exposition::parse(text)?;
    assert_eq!(
        m.value(
            "hangar_connect_sessions_total",
            &[("provider", "claude_code"), ("outcome", "cancelled")]
        ),
        Some(1.0),
        "{}",
        m.text
    );
    let counts: HashMap<String, f64> = ["completed", "failed", "expired"]
        .iter()
        .filter_map(|o| {
            m.value("hangar_connect_sessions_total", &[("outcome", o)])
                .map(|v| ((*o).to_owned(), v))
        })
        .collect();
    assert!(counts.is_empty(), "only the cancel happened: {counts:?}");
    tp.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn samples_stream_to_the_owner_and_admins_only() -> anyhow::Result<()> {
    let tp = TestPlane::start().await?;
    let alice = tp.new_user("alice").await?;
    let bob = tp.new_user("bob").await?;
    let id = tp.running_sandbox(&alice, images::BUSYBOX).await?;
    let mut admin_stream = open_stream(&tp, Some(&tp.admin_token), None).await?;
    let mut alice_stream = open_stream(&tp, Some(&alice), None).await?;
    let mut bob_stream = open_stream(&tp, Some(&bob), None).await?;

    // One collection of the local node: a heartbeat with the node's and the sandbox's samples.
    tp.plane.state.metrics.collect_once().await?;

    let seen = read_until(&mut alice_stream, "alice's sandbox sample", |n, d| {
        n == "sandbox_sample" && d["sandbox_id"] == id.as_str()
    })
    .await?;
    let sample = &seen.last().map(|(_, d)| d.clone()).unwrap_or_default()["sample"];
    assert!(sample["memory_bytes"].as_u64().unwrap_or(0) > 0, "{sample}");
    assert!(sample["pids"].as_u64().unwrap_or(0) >= 1, "{sample}");
    assert!(
        seen.iter().all(|(n, _)| n != "node_sample"),
        "node samples are for admins: {seen:?}"
    );
    let seen = read_until(&mut admin_stream, "the node sample", |n, _| {
        n == "node_sample"
    })
    .await?;
    let node = &seen.last().map(|(_, d)| d.clone()).unwrap_or_default();
    assert_eq!(node["sample"]["sandboxes_running"], 1, "{node}");
    read_until(
        &mut admin_stream,
        "alice's sandbox sample (admin)",
        |n, d| n == "sandbox_sample" && d["sandbox_id"] == id.as_str(),
    )
    .await?;

    // Bob's stream carries nothing of alice's: a sandbox of his own comes first.
    let bobs = tp.create(&bob, json!({"image": images::BUSYBOX})).await?;
    let seen = read_until(&mut bob_stream, "bob's own sandbox", |n, d| {
        n == "sandbox" && d["id"] == id_of(&bobs).as_str()
    })
    .await?;
    assert!(
        seen.iter()
            .all(|(n, d)| n == "sandbox" && d["id"] == id_of(&bobs).as_str()),
        "{seen:?}"
    );
    tp.shutdown().await
}
