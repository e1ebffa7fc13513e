//! hangar's OAuth benchmark (issue 5, "Speed"): the token endpoint (`authorization_code`
//! exchange and `refresh_token` grant) and introspection (RFC 7662) under 64 concurrent
//! connections with `wrk` on loopback, against hangar and against `oidc-provider` from npm
//! configured alike (`benches/oidc-provider/server.mjs`: same client, grants, PKCE, rotation,
//! opaque tokens, no rate limits, the same database), on SQLite and on PostgreSQL. Prints
//! throughput, latency percentiles and the ratio hangar / oidc-provider.
//!
//! Run: `cargo xtask bench-oauth` (installs wrk, PostgreSQL and the npm packages, then runs
//! `cargo bench -p hangar --bench oauth`). As root, like the tests (the plane's node uses runc).
//!
//! Environment: `BENCH_SECONDS` (length of each measured run, default 10),
//! `BENCH_BACKENDS` (`sqlite,postgres` by default), `BENCH_OPS` (a comma-separated subset of
//! `authorization_code,refresh_token,introspection`, all by default) and `BENCH_SERVERS`
//! (`hangar,oidc-provider` by default; with only one, no ratio is printed).
//!
//! Single-use tokens (codes, refresh tokens) come from pools issued before each run: a short
//! calibration run sizes the pool to 1.5x what the measured run will use, and a run whose pool
//! ran out is repeated with a bigger one (wrk would otherwise count idle time). Introspection
//! cycles through 1000 access tokens. Every child process and wait has a deadline.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use futures::{StreamExt as _, TryStreamExt as _};
use hangar_oauth::authorize::AuthorizationRequest;
use hangar_oauth::pkce::CodeChallenge;
use hangar_store::testing::TestDb;
use hangar_testkit::{TestConfig, TestPlane};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const CONNECTIONS: u32 = 64;
const THREADS: u32 = 2;
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const SCOPE: &str = "sandboxes:read offline_access";
const VERIFIER: &str = "hangar-bench-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
/// Codes live long enough to be issued in bulk before the run (on both servers).
const CODE_TTL: Duration = Duration::from_secs(900);
const INTROSPECT_POOL: usize = 1000;
const CALIBRATION: Duration = Duration::from_secs(2);
/// Deadline for issuing one pool.
const ISSUE_DEADLINE: Duration = Duration::from_secs(600);

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` / nextest discovery: nothing to list.
        return Ok(());
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .map(|s| s.parse())
        .transpose()
        .context("BENCH_SECONDS")?
        .unwrap_or(10);
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let run = Duration::from_secs(seconds);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let wrk = Command::new("wrk").arg("--version").output().await;
        if wrk.is_err() {
            bail!("wrk is missing: apt-get install wrk (or run `cargo xtask bench-oauth`)");
        }
        let mut report = String::new();
        for backend in backends.split(',').map(str::trim) {
            let rows = bench_backend(backend, run).await?;
            report.push_str(&table(backend, &rows));
        }
        println!("\n{report}");
        Ok(())
    })
}

/// One measured run.
#[derive(Debug, Clone, Copy, Deserialize)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    not_ok: u64,
    spent_threads: u64,
    socket_errors: u64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

impl WrkResult {
    /// A server left out by `BENCH_SERVERS`.
    const NONE: WrkResult = WrkResult {
        requests: 0,
        duration_us: 0,
        not_ok: 0,
        spent_threads: 0,
        socket_errors: 0,
        p50_us: 0,
        p90_us: 0,
        p99_us: 0,
        max_us: 0,
    };

    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Code,
    Refresh,
    Introspect,
}

impl Op {
    const ALL: [Op; 3] = [Op::Code, Op::Refresh, Op::Introspect];

    fn name(self) -> &'static str {
        match self {
            Op::Code => "authorization_code",
            Op::Refresh => "refresh_token",
            Op::Introspect => "introspection",
        }
    }

    /// What the pool holds, in the oidc-provider server's command words.
    fn pool_kind(self) -> &'static str {
        match self {
            Op::Code => "codes",
            Op::Refresh => "refresh",
            Op::Introspect => "access",
        }
    }

    fn form(self) -> String {
        match self {
            Op::Code => format!(
                "grant_type=authorization_code&code={{token}}&redirect_uri={}&code_verifier={VERIFIER}",
                url_escape(REDIRECT)
            ),
            Op::Refresh => "grant_type=refresh_token&refresh_token={token}".to_owned(),
            Op::Introspect => "token={token}".to_owned(),
        }
    }
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A server under test: where it answers and how pools of tokens are issued on it.
trait Target {
    fn label(&self) -> &'static str;
    fn base(&self) -> &str;
    fn path(&self, op: Op) -> &'static str;
    fn authorization(&self) -> String;
    async fn issue(&mut self, op: Op, n: usize, file: &Path) -> anyhow::Result<()>;
}

async fn bench_backend(
    backend: &str,
    run: Duration,
) -> anyhow::Result<Vec<(Op, WrkResult, WrkResult)>> {
    let work = tempfile::Builder::new()
        .prefix("hangar-bench-oauth")
        .tempdir()?;
    let (hangar_db, oidc_db, oidc_storage) = match backend {
        "sqlite" => (
            None,
            None,
            format!("sqlite:{}", work.path().join("oidc-provider.db").display()),
        ),
        "postgres" => {
            let a = TestDb::postgres().await.context("PostgreSQL skipped")?;
            let b = TestDb::postgres().await.context("PostgreSQL skipped")?;
            let storage = format!("postgres:{}", b.url());
            (Some(a), Some(b), storage)
        }
        other => bail!("unknown backend {other}: sqlite or postgres"),
    };
    eprintln!("== {backend}: starting hangar and oidc-provider");
    let mut hangar = Hangar::start(hangar_db.as_ref().map(|db| db.url().to_owned())).await?;
    let mut oidc = OidcProvider::start(&oidc_storage).await?;
    let ops = std::env::var("BENCH_OPS").unwrap_or_default();
    let servers = std::env::var("BENCH_SERVERS").unwrap_or_default();
    let wanted =
        |list: &str, name: &str| list.is_empty() || list.split(',').any(|w| w.trim() == name);
    let mut rows = Vec::new();
    for op in Op::ALL.into_iter().filter(|op| wanted(&ops, op.name())) {
        let h = if wanted(&servers, "hangar") {
            measure(&mut hangar, op, run, work.path()).await?
        } else {
            WrkResult::NONE
        };
        let o = if wanted(&servers, "oidc-provider") {
            measure(&mut oidc, op, run, work.path()).await?
        } else {
            WrkResult::NONE
        };
        eprintln!(
            "{backend} {}: hangar {:.0}/s p99 {:.1} ms, oidc-provider {:.0}/s p99 {:.1} ms",
            op.name(),
            h.rps(),
            h.p99_us as f64 / 1000.0,
            o.rps(),
            o.p99_us as f64 / 1000.0
        );
        rows.push((op, h, o));
    }
    drop(oidc);
    hangar.plane.shutdown().await?;
    drop(oidc_db);
    Ok(rows)
}

/// Measures `op` on `target` for `run`: calibration (single-use pools), then the run, repeated
/// with a bigger pool if one ran out.
async fn measure<T: Target>(
    target: &mut T,
    op: Op,
    run: Duration,
    dir: &Path,
) -> anyhow::Result<WrkResult> {
    let pool = dir.join(format!("{}-{}.txt", target.label(), op.pool_kind()));
    if op == Op::Introspect {
        target.issue(op, INTROSPECT_POOL, &pool).await?;
        wrk(target, op, &pool, CALIBRATION).await?;
        return checked(wrk(target, op, &pool, run).await?, target, op);
    }
    let mut size = 4000usize;
    let rate = loop {
        target.issue(op, size, &pool).await?;
        let calibration = wrk(target, op, &pool, CALIBRATION).await?;
        if calibration.spent_threads == 0 {
            break calibration.rps();
        }
        if size >= 64_000 {
            bail!(
                "{} {}: calibration pool of {size} still ran out",
                target.label(),
                op.name()
            );
        }
        size *= 2;
    };
    let mut size = (rate * run.as_secs_f64() * 1.5) as usize + 500;
    for _ in 0..3 {
        target.issue(op, size, &pool).await?;
        let result = wrk(target, op, &pool, run).await?;
        if result.spent_threads == 0 {
            return checked(result, target, op);
        }
        size *= 2;
    }
    bail!(
        "{} {}: the pool kept running out",
        target.label(),
        op.name()
    )
}

fn checked<T: Target>(r: WrkResult, target: &T, op: Op) -> anyhow::Result<WrkResult> {
    if r.not_ok > 0 || r.socket_errors > 0 {
        bail!(
            "{} {}: {} answers other than 200 and {} socket errors in {} requests",
            target.label(),
            op.name(),
            r.not_ok,
            r.socket_errors,
            r.requests
        );
    }
    Ok(r)
}

async fn wrk<T: Target>(
    target: &T,
    op: Op,
    pool: &Path,
    run: Duration,
) -> anyhow::Result<WrkResult> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/oauth.lua");
    let out = tokio::time::timeout(
        run + Duration::from_secs(30),
        Command::new("wrk")
            .arg(format!("-t{THREADS}"))
            .arg(format!("-c{CONNECTIONS}"))
            .arg(format!("-d{}s", run.as_secs().max(1)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&script)
            .arg(target.base())
            .env("BENCH_PATH", target.path(op))
            .env("BENCH_POOL", pool)
            .env("BENCH_FORM", op.form())
            .env("BENCH_AUTH", target.authorization())
            .env("BENCH_THREADS", THREADS.to_string())
            .env("BENCH_REUSE", if op == Op::Introspect { "1" } else { "0" })
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("wrk overran its deadline")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "wrk printed no result: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

fn table(backend: &str, rows: &[(Op, WrkResult, WrkResult)]) -> String {
    let mut s = format!(
        "{backend}: {CONNECTIONS} connections, {THREADS} wrk threads, loopback\n\
         | operation | server | requests/s | p50 ms | p90 ms | p99 ms | max ms | ratio |\n\
         |---|---|---|---|---|---|---|---|\n"
    );
    let ms = |us: u64| us as f64 / 1000.0;
    for (op, h, o) in rows {
        for (label, r, ratio) in [
            (
                "hangar",
                h,
                (o.requests > 0).then(|| h.rps() / o.rps().max(1e-9)),
            ),
            ("oidc-provider", o, None),
        ] {
            if r.requests == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {label} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
                op.name(),
                r.rps(),
                ms(r.p50_us),
                ms(r.p90_us),
                ms(r.p99_us),
                ms(r.max_us),
                ratio.map(|x| format!("{x:.2}x")).unwrap_or_default()
            );
        }
    }
    s.push('\n');
    s
}

// ---- hangar ----

struct Hangar {
    plane: TestPlane,
    client_id: String,
    secret: String,
    http: reqwest::Client,
}

impl Hangar {
    async fn start(store_url: Option<String>) -> anyhow::Result<Self> {
        let plane = TestPlane::start_config(TestConfig {
            store_url,
            oauth: hangar_server::oauth::OAuthConfig {
                code_ttl: CODE_TTL,
                // No rate limits, as oidc-provider has none.
                rate: hangar_server::oauth::RateConfig {
                    per_client_per_s: u32::MAX,
                    per_addr_per_s: u32::MAX,
                    burst: u32::MAX,
                },
                ..Default::default()
            },
            ..TestConfig::default()
        })
        .await?;
        let (status, body) = plane
            .request(
                reqwest::Method::POST,
                "/api/v1/oauth/clients",
                Some(&plane.admin_token),
                Some(json!({
                    "name": "bench",
                    "redirect_uris": [REDIRECT],
                    "scope": SCOPE,
                    "public": false,
                    "grant_types": ["authorization_code", "refresh_token"],
                })),
            )
            .await?;
        anyhow::ensure!(
            status == 201,
            "registering the bench client: {status} {body}"
        );
        Ok(Self {
            client_id: body["client_id"].as_str().context("client_id")?.to_owned(),
            secret: body["client_secret"]
                .as_str()
                .context("client_secret")?
                .to_owned(),
            plane,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    /// `n` codes, approved as the admin through the service (what the consent page calls).
    async fn codes(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let challenge = CodeChallenge::s256_of(VERIFIER);
        let request = AuthorizationRequest::from_pairs([
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", SCOPE),
            ("state", "s"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let oauth = &self.plane.plane.state.oauth;
        let validated = oauth
            .validate_authorization_request(&request)
            .await
            .map_err(|e| anyhow::anyhow!("authorization request refused: {e:?}"))?;
        let admin = self
            .plane
            .plane
            .state
            .accounts
            .authenticate(Some(&format!("Bearer {}", self.plane.admin_token)))
            .await?;
        futures::stream::iter(0..n)
            .map(|_| async {
                let url = oauth.approve(&admin, &validated).await?;
                let url = reqwest::Url::parse(&url)?;
                url.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .context("code in the redirect")
            })
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// Exchanges each code and returns the answers' `field` (`refresh_token`, `access_token`).
    async fn exchange_all(
        &self,
        codes: Vec<String>,
        field: &'static str,
    ) -> anyhow::Result<Vec<String>> {
        let url = format!("{}/oauth/token", self.plane.base);
        futures::stream::iter(codes)
            .map(|code| {
                let url = url.clone();
                async move {
                    let answer: Value = self
                        .http
                        .post(&url)
                        .basic_auth(&self.client_id, Some(&self.secret))
                        .form(&[
                            ("grant_type", "authorization_code"),
                            ("code", code.as_str()),
                            ("redirect_uri", REDIRECT),
                            ("code_verifier", VERIFIER),
                        ])
                        .send()
                        .await?
                        .json()
                        .await?;
                    answer[field]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("no {field} in {answer}"))
                }
            })
            .buffer_unordered(32)
            .try_collect()
            .await
    }
}

impl Target for Hangar {
    fn label(&self) -> &'static str {
        "hangar"
    }

    fn base(&self) -> &str {
        &self.plane.base
    }

    fn path(&self, op: Op) -> &'static str {
        match op {
            Op::Code | Op::Refresh => "/oauth/token",
            Op::Introspect => "/oauth/introspect",
        }
    }

    fn authorization(&self) -> String {
        basic(&self.client_id, &self.secret)
    }

    async fn issue(&mut self, op: Op, n: usize, file: &Path) -> anyhow::Result<()> {
        let work = async {
            let codes = self.codes(n).await?;
            let tokens = match op {
                Op::Code => codes,
                Op::Refresh => self.exchange_all(codes, "refresh_token").await?,
                Op::Introspect => self.exchange_all(codes, "access_token").await?,
            };
            write_pool(file, &tokens)
        };
        tokio::time::timeout(ISSUE_DEADLINE, work)
            .await
            .context("issuing a pool overran its deadline")?
    }
}

/// RFC 6749 section 2.3.1: Basic with the form-encoded id and secret.
fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{}:{}", url_escape(id), url_escape(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

fn write_pool(file: &Path, tokens: &[String]) -> anyhow::Result<()> {
    let mut text = tokens.join("\n");
    text.push('\n');
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))
}

// ---- oidc-provider ----

struct OidcProvider {
    issuer: String,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    _child: Child,
}

const OIDC_CLIENT: &str = "bench";
const OIDC_SECRET: &str = "bench-secret-0123456789abcdef";

impl OidcProvider {
    async fn start(storage: &str) -> anyhow::Result<Self> {
        let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/oidc-provider");
        if !dir.join("node_modules/oidc-provider").exists() {
            bail!(
                "npm packages missing: npm ci in {} (cargo xtask bench-oauth does it)",
                dir.display()
            );
        }
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("CLIENT_ID", OIDC_CLIENT)
            .env("CLIENT_SECRET", OIDC_SECRET)
            .env("REDIRECT_URI", REDIRECT)
            .env("CODE_CHALLENGE", CodeChallenge::s256_of(VERIFIER).as_str())
            .env("CODE_TTL", CODE_TTL.as_secs().to_string())
            .env("STORAGE", storage)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting node")?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await
            .context("oidc-provider did not start in 30 s")??
            .context("oidc-provider exited")?;
        let started: Value = serde_json::from_str(&first)?;
        Ok(Self {
            issuer: started["issuer"].as_str().context("issuer")?.to_owned(),
            stdin,
            stdout,
            _child: child,
        })
    }
}

impl Target for OidcProvider {
    fn label(&self) -> &'static str {
        "oidc-provider"
    }

    fn base(&self) -> &str {
        &self.issuer
    }

    fn path(&self, op: Op) -> &'static str {
        match op {
            Op::Code | Op::Refresh => "/token",
            Op::Introspect => "/token/introspection",
        }
    }

    fn authorization(&self) -> String {
        basic(OIDC_CLIENT, OIDC_SECRET)
    }

    async fn issue(&mut self, op: Op, n: usize, file: &Path) -> anyhow::Result<()> {
        let line = format!("{} {n} {}\n", op.pool_kind(), file.display());
        self.stdin.write_all(line.as_bytes()).await?;
        let answer = tokio::time::timeout(ISSUE_DEADLINE, self.stdout.next_line())
            .await
            .context("issuing a pool overran its deadline")??
            .context("oidc-provider exited")?;
        if answer != "ok" {
            bail!("oidc-provider: {answer}");
        }
        Ok(())
    }
}
