//! Prometheus metrics (`GET /metrics`), with `prometheus-client` (the Prometheus project's
//! Rust client; its text encoder writes the OpenMetrics text format, which Prometheus
//! scrapes natively).
//!
//! Names follow the Prometheus conventions: `hangar_` prefix, base units in the name
//! (`_seconds`), counters end in `_total`. Every label has a bounded set of values: the
//! route *template* (axum's [`MatchedPath`], never the raw path; `unmatched` when no route
//! matched), a known HTTP method (else `other`), the status code, sandbox states, boot stages,
//! failure kinds, provider ids (from the provider registry) and connect outcomes.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `hangar_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `hangar_sandbox_create_to_ready_seconds` | histogram | |
//! | `hangar_sandbox_boot_failures_total` | counter | `stage` (reached, or `none`), `kind` |
//! | `hangar_sandboxes_vanished_total` | counter | |
//! | `hangar_reconciler_orphans_removed_total` | counter | |
//! | `hangar_connect_sessions_total` | counter | `provider`, `outcome` (`completed`, `failed`, `cancelled`, `expired`) |
//! | `hangar_sandboxes` | gauge, read from the store at scrape time | `state` |
//! | `hangar_store_connections` | gauge, read from the pool at scrape time | `state` (`idle`, `active`) |
//! | `hangar_store_connections_max` | gauge | |
//! | `hangar_live_subscribers` | gauge, at scrape time | |
//! | `hangar_build_info` | info | `version` |

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hangar_core::{BootStage, ConnectState, FailureKind};
use hangar_store::{Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// What the services report to: the live bus (every record written), the event log
/// (failures, reconciler actions, connect outcomes) and the Prometheus metrics. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Observers {
    /// The live bus behind `GET /api/v1/stream`.
    pub live: crate::live::LiveBus,
    /// The event log behind `GET /api/v1/events`.
    pub events: Arc<crate::events::EventService>,
    /// The metrics behind `GET /metrics`.
    pub metrics: Arc<Metrics>,
}

/// Who may read `GET /metrics` (config file `[metrics]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `true`: anyone who can reach the API may scrape (for a Prometheus on a private
    /// network). `false` (default): only an admin's bearer token with the `admin` scope.
    pub public: bool,
}

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `route` label of a request no route matched (so unknown paths add no series).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Request duration buckets, in seconds (Prometheus client defaults, 5 ms to 10 s).
const HTTP_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Create-to-ready buckets, in seconds (50 ms to 2 min: runc boots in well under a second,
/// VMs in seconds, the readiness deadline is 30 s by default).
const READY_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BootFailureLabels {
    stage: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectLabels {
    provider: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The metrics registry and the handles the services update. Shared as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Histogram, fn() -> Histogram>,
    create_to_ready: Histogram,
    boot_failures: Family<BootFailureLabels, Counter>,
    vanished: Counter,
    orphans_removed: Counter,
    connect_sessions: Family<ConnectLabels, Counter>,
    sandboxes: Family<StateLabels, Gauge>,
    store_connections: Family<StateLabels, Gauge>,
    store_connections_max: Gauge,
    live_subscribers: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric of the table above registered.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("hangar");
        let http = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            http_histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP requests by route template, method and status, until the response head",
            Unit::Seconds,
            http.clone(),
        );
        let create_to_ready = Histogram::new(READY_BUCKETS);
        registry.register_with_unit(
            "sandbox_create_to_ready",
            "From a sandbox's creation to its first running state",
            Unit::Seconds,
            create_to_ready.clone(),
        );
        let boot_failures = Family::<BootFailureLabels, Counter>::default();
        registry.register(
            "sandbox_boot_failures",
            "Sandboxes failed while booting, by the boot stage reached and the failure kind",
            boot_failures.clone(),
        );
        let vanished = Counter::default();
        registry.register(
            "sandboxes_vanished",
            "Running sandboxes the runtime lost outside a planned stop",
            vanished.clone(),
        );
        let orphans_removed = Counter::default();
        registry.register(
            "reconciler_orphans_removed",
            "Runtime objects, directories and network leftovers the reconciler removed",
            orphans_removed.clone(),
        );
        let connect_sessions = Family::<ConnectLabels, Counter>::default();
        registry.register(
            "connect_sessions",
            "Connect sessions ended, by provider and outcome",
            connect_sessions.clone(),
        );
        let sandboxes = Family::<StateLabels, Gauge>::default();
        registry.register(
            "sandboxes",
            "Sandbox records by state (read from the store at scrape time)",
            sandboxes.clone(),
        );
        let store_connections = Family::<StateLabels, Gauge>::default();
        registry.register(
            "store_connections",
            "Open store connections, idle or in use",
            store_connections.clone(),
        );
        let store_connections_max = Gauge::default();
        registry.register(
            "store_connections_max",
            "The most connections the store's pool opens",
            store_connections_max.clone(),
        );
        let live_subscribers = Gauge::default();
        registry.register(
            "live_subscribers",
            "Open live-update streams (GET /api/v1/stream)",
            live_subscribers.clone(),
        );
        registry.register(
            "build",
            "The running hangar's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Arc::new(Self {
            registry,
            http,
            create_to_ready,
            boot_failures,
            vanished,
            orphans_removed,
            connect_sessions,
            sandboxes,
            store_connections,
            store_connections_max,
            live_subscribers,
        })
    }

    /// Records one answered HTTP request.
    pub fn observe_http(&self, method: &axum::http::Method, route: &str, status: u16, secs: f64) {
        self.http
            .get_or_create(&HttpLabels {
                method: method_label(method),
                route: route.to_owned(),
                status,
            })
            .observe(secs);
    }

    /// Records a sandbox's first `running`, `secs` after its creation.
    pub fn observe_create_to_ready(&self, secs: f64) {
        self.create_to_ready.observe(secs);
    }

    /// Records a sandbox that became `failed`: boot failures by stage and kind, vanished
    /// sandboxes on their own counter.
    pub fn sandbox_failed(&self, kind: FailureKind, stage: Option<BootStage>) {
        match kind {
            FailureKind::Vanished => {
                self.vanished.inc();
            }
            FailureKind::BootTimeout | FailureKind::BootError | FailureKind::Interrupted => {
                self.boot_failures
                    .get_or_create(&BootFailureLabels {
                        stage: stage.map_or("none", BootStage::as_str),
                        kind: failure_kind_label(kind),
                    })
                    .inc();
            }
        }
    }

    /// Records `n` orphans removed by the reconciler.
    pub fn orphans_removed(&self, n: u64) {
        self.orphans_removed.inc_by(n);
    }

    /// Records a connect session that reached a terminal state (other states are ignored).
    pub fn connect_session_ended(&self, provider: &str, outcome: ConnectState) {
        let outcome = match outcome {
            ConnectState::Completed => "completed",
            ConnectState::Failed => "failed",
            ConnectState::Cancelled => "cancelled",
            ConnectState::Expired => "expired",
            ConnectState::Starting | ConnectState::AwaitingUser | ConnectState::Capturing => return,
        };
        self.connect_sessions
            .get_or_create(&ConnectLabels {
                provider: provider.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Reads the scrape-time figures (sandboxes by state from the store, the pool, live
    /// subscribers) and encodes every metric. Errors: the store's, reading the counts.
    pub async fn render(
        &self,
        store: &Store,
        live_subscribers: usize,
    ) -> Result<String, StoreError> {
        let counts = store.sandboxes().count_by_state().await?;
        for state in hangar_core::sandbox::ALL_STATES {
            let n = counts
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n);
            self.sandboxes
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let pool = store.pool_stats();
        self.store_connections
            .get_or_create(&StateLabels { state: "idle" })
            .set(i64::from(pool.idle));
        self.store_connections
            .get_or_create(&StateLabels { state: "active" })
            .set(i64::from(pool.open - pool.idle));
        self.store_connections_max.set(i64::from(pool.max));
        self.live_subscribers
            .set(i64::try_from(live_subscribers).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        Ok(text)
    }
}

fn failure_kind_label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::BootTimeout => "boot_timeout",
        FailureKind::BootError => "boot_error",
        FailureKind::Vanished => "vanished",
        FailureKind::Interrupted => "interrupted",
    }
}

/// The `method` label: a standard method's name, else `other` (extension methods are
/// unbounded).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware (in [`crate::api::router`]) timing every request into
/// `hangar_http_request_duration_seconds`, labelled with the matched route template.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());
    let method = req.method().clone();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe_http(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.observe_http(
            &axum::http::Method::GET,
            "/api/v1/sandboxes/{id}",
            200,
            0.01,
        );
        m.observe_http(
            &axum::http::Method::from_bytes(b"BREW").expect("method"),
            UNMATCHED_ROUTE,
            404,
            0.01,
        );
        m.sandbox_failed(FailureKind::BootTimeout, Some(BootStage::ProcessStarted));
        m.connect_session_ended("codex", ConnectState::Completed);
        m.connect_session_ended("codex", ConnectState::AwaitingUser);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry).expect("encode");
        for line in [
            "hangar_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/sandboxes/{id}\",status=\"200\"} 1",
            "hangar_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",status=\"404\"} 1",
            "hangar_sandbox_boot_failures_total{stage=\"process_started\",kind=\"boot_timeout\"} 1",
            "hangar_connect_sessions_total{provider=\"codex\",outcome=\"completed\"} 1",
            "hangar_build_info{version=\"0.1.0\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("awaiting_user"), "{text}");
    }
}
