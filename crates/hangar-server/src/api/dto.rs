//! The wire format of `/api/v1`: request and response bodies, converted to and from domain
//! types here and nowhere else. The CLI deserializes these same types.

use std::collections::BTreeMap;

use hangar_core::{
    BootEvent, ConnectFlow, ConnectPrompt, ConnectSession, ConnectSessionId, ConnectState,
    DriverKind, Failure, Limits, NetworkPolicy, NodeId, ProviderId, RetentionPolicy, Sandbox,
    SandboxId, SandboxState, Timestamp, TokenId, UserId,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/v1/sandboxes` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxRequest {
    /// Image name (`default`) or digest (`sha256:...`). Default `default`.
    #[serde(default)]
    pub image: Option<String>,
    /// Limits; any field left out takes the server default.
    #[serde(default)]
    pub limits: Option<LimitsRequest>,
    /// How long the boot may take before the sandbox is `failed`, in milliseconds
    /// (100 to the server maximum; default 30000).
    #[serde(default)]
    pub readiness_timeout_ms: Option<u64>,
    /// What to keep if the sandbox fails. Default: release everything.
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    /// `none` (loopback only) or `egress` (outbound internet through the node's NAT).
    /// Default: the node's configured default.
    #[serde(default)]
    pub network: Option<NetworkPolicy>,
}

/// Limits in a create request; missing fields take the server defaults.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// CPU quota in thousandths of a core.
    pub cpu_millis: Option<u32>,
    /// Memory limit in MiB.
    pub memory_mib: Option<u32>,
    /// Maximum number of processes.
    pub pids_max: Option<u32>,
}

impl LimitsRequest {
    /// Fills missing fields from `defaults`.
    pub fn resolve(self, defaults: Limits) -> Limits {
        Limits {
            cpu_millis: self.cpu_millis.unwrap_or(defaults.cpu_millis),
            memory_mib: self.memory_mib.unwrap_or(defaults.memory_mib),
            pids_max: self.pids_max.unwrap_or(defaults.pids_max),
        }
    }
}

/// A sandbox as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxView {
    /// Its id.
    pub id: SandboxId,
    /// Its owner.
    pub owner: UserId,
    /// The node running it.
    pub node: NodeId,
    /// The image name asked for.
    pub image: String,
    /// The image digest used.
    pub image_digest: String,
    /// The driver.
    pub driver: DriverKind,
    /// The state.
    pub state: SandboxState,
    /// Limits in force.
    pub limits: Limits,
    /// Network policy: `none` or `egress`.
    #[serde(default)]
    pub network: NetworkPolicy,
    /// Its IPv4 address on the node's sandbox network, while it runs with `egress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "10.89.0.2")]
    pub address: Option<std::net::Ipv4Addr>,
    /// Stages of the latest boot with their times.
    pub boot: Vec<BootEvent>,
    /// Why it failed, when failed.
    pub failure: Option<Failure>,
    /// Retention policy on failure.
    pub retention: RetentionPolicy,
    /// Readiness deadline in milliseconds.
    pub readiness_timeout_ms: u64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
    /// When its node resources were released, if they were.
    pub released_at: Option<Timestamp>,
}

impl From<Sandbox> for SandboxView {
    fn from(s: Sandbox) -> Self {
        Self {
            id: s.id,
            owner: s.owner,
            node: s.node,
            image: s.image,
            image_digest: s.image_digest,
            driver: s.driver,
            state: s.state,
            limits: s.limits,
            network: s.network,
            address: None,
            boot: s.boot,
            failure: s.failure,
            retention: s.retention,
            readiness_timeout_ms: s.readiness_timeout_ms,
            created_at: s.created_at,
            updated_at: s.updated_at,
            released_at: s.released_at,
        }
    }
}

impl SandboxView {
    /// The view with the sandbox's network address (see [`SandboxView::address`]).
    pub fn with_address(mut self, address: Option<std::net::Ipv4Addr>) -> Self {
        self.address = address;
        self
    }
}

/// `GET /api/v1/sandboxes` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Include destroyed sandboxes.
    #[serde(default)]
    pub all: bool,
}

/// `POST /api/v1/sandboxes/{id}/exec` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequestBody {
    /// The command and its arguments; argv\[0\] is looked up on PATH.
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the user's home).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Deadline in milliseconds (default 60000); the command is killed when it passes.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Text written to the command's stdin, which is then closed.
    #[serde(default)]
    pub stdin: Option<String>,
}

/// The result of an exec.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExecResult {
    /// Exit code, if the command exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// True when the deadline killed it.
    pub timed_out: bool,
    /// Its stdout (UTF-8, invalid bytes replaced).
    pub stdout: String,
    /// Its stderr (UTF-8, invalid bytes replaced).
    pub stderr: String,
    /// Wall time of the whole call in milliseconds.
    pub duration_ms: u64,
}

/// An image on the node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageView {
    /// Its name.
    pub name: String,
    /// Its content digest.
    pub digest: String,
    /// Size of its root filesystem in bytes.
    pub size_bytes: u64,
    /// Labels (such as the CLI versions it carries).
    pub labels: BTreeMap<String, String>,
}

/// A user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// Its id.
    pub id: UserId,
    /// Its name.
    pub name: String,
    /// Whether it is an admin.
    pub is_admin: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

impl From<hangar_store::User> for UserView {
    fn from(u: hangar_store::User) -> Self {
        Self {
            id: u.id,
            name: u.name,
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

/// `POST /api/v1/users` body (admin only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Unique name: 1-64 of letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// Make it an admin.
    #[serde(default)]
    pub admin: bool,
}

/// A new user and its first token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedUser {
    /// The user.
    pub user: UserView,
    /// Its first personal access token; shown only here.
    pub token: String,
}

/// `POST /api/v1/tokens` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// A label for the token.
    pub name: String,
    /// Lifetime in seconds (default: no expiry; at most one year).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
    /// Space-separated scopes the token is limited to (default: every scope the caller's
    /// own credential has, which must then be all of them).
    #[serde(default)]
    pub scope: Option<String>,
}

/// A token record (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Its id.
    pub id: TokenId,
    /// Its label.
    pub name: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it expires.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// When it was last used.
    pub last_used_at: Option<Timestamp>,
    /// The scopes it is limited to (space-separated); absent for every scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl From<hangar_store::TokenRecord> for TokenView {
    fn from(t: hangar_store::TokenRecord) -> Self {
        Self {
            id: t.id,
            name: t.name,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
            scope: t.scopes.map(|s| s.to_string()),
        }
    }
}

/// A new token: its record and its secret (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The record.
    #[serde(flatten)]
    pub record: TokenView,
    /// The secret; shown only here.
    pub token: String,
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MeView {
    /// The user id.
    pub id: UserId,
    /// The user name.
    pub name: String,
    /// Whether the user is an admin.
    pub is_admin: bool,
    /// The scopes of the credential used (space-separated).
    pub scope: String,
}

/// `POST /api/v1/oauth/clients` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOAuthClientRequest {
    /// Display name (shown on the consent page).
    pub name: String,
    /// Redirect URIs, compared exactly.
    pub redirect_uris: Vec<String>,
    /// Space-separated scopes the client may ask for.
    pub scope: String,
    /// A public client (no secret, PKCE required); default confidential.
    #[serde(default)]
    pub public: bool,
    /// Grant types (`authorization_code`, `refresh_token`,
    /// `urn:ietf:params:oauth:grant-type:device_code`); default all.
    #[serde(default)]
    pub grant_types: Vec<String>,
}

/// A registered OAuth client (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OAuthClientView {
    /// `client_id`.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// `confidential` or `public`.
    pub client_type: String,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Allowed scopes, space-separated.
    pub scope: String,
    /// Allowed grant types.
    pub grant_types: Vec<String>,
    /// When it was registered.
    pub created_at: Timestamp,
}

impl From<hangar_oauth::OAuthClient> for OAuthClientView {
    fn from(c: hangar_oauth::OAuthClient) -> Self {
        Self {
            client_id: c.id.to_string(),
            name: c.name,
            client_type: c.client_type.as_str().to_owned(),
            redirect_uris: c.redirect_uris,
            scope: c.scopes.to_string(),
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            created_at: c.created_at,
        }
    }
}

/// A newly registered client: its record and, for a confidential client, its secret (shown
/// only here).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedOAuthClient {
    /// The client.
    #[serde(flatten)]
    pub client: OAuthClientView,
    /// `client_secret`; absent for public clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// One of the person's linked apps (an OAuth grant).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LinkedAppView {
    /// The grant id (revoke with `DELETE /api/v1/account/apps/{id}`).
    pub id: hangar_core::GrantId,
    /// The client.
    pub client_id: String,
    /// The client's name.
    pub client_name: String,
    /// Scopes granted, space-separated.
    pub scope: String,
    /// First approval.
    pub created_at: Timestamp,
    /// Latest approval.
    pub updated_at: Timestamp,
}

impl From<hangar_store::GrantRecord> for LinkedAppView {
    fn from(g: hangar_store::GrantRecord) -> Self {
        Self {
            id: g.id,
            client_id: g.client_id.to_string(),
            client_name: g.client_name,
            scope: g.scopes.to_string(),
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// The caller's account (`GET /api/v1/account`): who they are and the upstream identities
/// they sign in with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// The user id.
    pub id: UserId,
    /// The account name.
    pub name: String,
    /// Whether the user is an admin.
    pub is_admin: bool,
    /// When the account was made.
    pub created_at: Timestamp,
    /// The identities at GitHub / OpenID Connect providers linked to it.
    pub identities: Vec<IdentityView>,
}

/// One linked upstream identity.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityView {
    /// The configured provider name (`github` or an OpenID Connect provider's name).
    pub provider: String,
    /// The provider's subject (OpenID Connect `sub`, GitHub user id).
    pub subject: String,
    /// The verified email the provider gave, if any.
    pub email: Option<String>,
    /// When it was linked.
    pub created_at: Timestamp,
}

impl From<hangar_store::ExternalIdentity> for IdentityView {
    fn from(i: hangar_store::ExternalIdentity) -> Self {
        Self {
            provider: i.provider,
            subject: i.subject,
            email: i.email,
            created_at: i.created_at,
        }
    }
}

/// `GET /api/v1/sandboxes/{id}/pty` query.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
pub struct PtyQuery {
    /// Terminal rows (default 24).
    #[serde(default)]
    pub rows: Option<u16>,
    /// Terminal columns (default 80).
    #[serde(default)]
    pub cols: Option<u16>,
    /// The command as a JSON array of strings (default: the user's login shell).
    #[serde(default)]
    pub argv: Option<String>,
}

/// Text messages a PTY client sends (binary messages are keyboard input).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PtyClientMessage {
    /// The terminal was resized.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Send a signal to the foreground process group.
    Signal {
        /// Signal number (2 = SIGINT).
        signal: i32,
    },
    /// Keyboard input as text.
    Stdin {
        /// The text.
        data: String,
    },
}

/// Text messages the server sends on a PTY (binary messages are terminal output).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PtyServerMessage {
    /// The command ended; the socket closes next.
    Exit {
        /// Exit code, if it exited.
        code: Option<i32>,
        /// Signal that ended it, if one did.
        signal: Option<i32>,
    },
    /// Something went wrong; the socket closes next.
    Error {
        /// What.
        message: String,
    },
}

/// `POST /api/v1/connect` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartConnectRequest {
    /// The provider: `claude_code`, `codex`, `gemini_cli`, or one added as data.
    pub provider: String,
    /// The flow (`browser`, `device_code`, `paste_code`, `token`); the provider's first
    /// offered one when left out.
    #[serde(default)]
    pub flow: Option<ConnectFlow>,
}

/// A connect session as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectSessionView {
    /// Its id.
    pub id: ConnectSessionId,
    /// The provider.
    pub provider: ProviderId,
    /// The flow.
    pub flow: ConnectFlow,
    /// Its state.
    pub state: ConnectState,
    /// What the person must do, once known.
    pub prompt: Option<ConnectPrompt>,
    /// The browser sandbox the login runs in.
    pub browser_sandbox: Option<SandboxId>,
    /// The WebSocket carrying the browser sandbox's VNC (RFB) stream, for a noVNC viewer.
    pub viewer_websocket: Option<String>,
    /// The viewer page with the session's viewer token in its fragment; only in the answer
    /// that starts a browser-flow session (the token is never shown again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer_url: Option<String>,
    /// When it was started.
    pub created_at: Timestamp,
    /// The sign-in deadline.
    pub expires_at: Timestamp,
    /// When it completed.
    pub completed_at: Option<Timestamp>,
    /// Why it failed.
    pub failure: Option<String>,
}

impl From<ConnectSession> for ConnectSessionView {
    fn from(s: ConnectSession) -> Self {
        let viewer_websocket = match (s.flow, s.browser_sandbox, s.state.is_terminal()) {
            (ConnectFlow::Browser, Some(_), false) => Some(format!("/api/v1/connect/{}/vnc", s.id)),
            _ => None,
        };
        Self {
            id: s.id,
            provider: s.provider,
            flow: s.flow,
            state: s.state,
            prompt: s.prompt,
            browser_sandbox: s.browser_sandbox,
            viewer_websocket,
            viewer_url: None,
            created_at: s.created_at,
            expires_at: s.expires_at,
            completed_at: s.completed_at,
            failure: s.failure,
        }
    }
}

/// `POST /api/v1/connect/{id}/code` body: text for the login command (a paste code, or a
/// token for the token flow).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitCodeRequest {
    /// One line.
    pub code: String,
}

/// A provider hangar can connect.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    /// Its id.
    pub id: ProviderId,
    /// Its display name.
    pub display_name: String,
    /// The flows it offers.
    pub flows: Vec<ConnectFlow>,
}

/// A node as `GET /api/v1/nodes` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its id.
    pub id: NodeId,
    /// Its name (usually the host name).
    pub name: String,
    /// Where the control plane reaches its agent, if anywhere.
    pub address: Option<String>,
    /// Drivers it offers (`runc`, ...).
    pub drivers: Vec<String>,
    /// `ready`, or `unreachable` once no heartbeat came for the configured silence
    /// (`[nodes] unreachable_after_s`, default 30 s).
    pub state: hangar_core::NodeState,
    /// When its last heartbeat was received.
    pub last_heartbeat_at: Timestamp,
    /// When it first registered.
    pub created_at: Timestamp,
    /// Its newest sample, if any.
    pub latest: Option<hangar_core::NodeSample>,
}

impl From<crate::metrics::NodeStatus> for NodeView {
    fn from(n: crate::metrics::NodeStatus) -> Self {
        Self {
            id: n.record.id,
            name: n.record.name,
            address: n.record.address,
            drivers: n.record.drivers,
            state: n.state,
            last_heartbeat_at: n.record.last_heartbeat_at,
            created_at: n.record.created_at,
            latest: n.latest,
        }
    }
}

/// An operational event as `GET /api/v1/events` and the `event` stream event show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Its id (UUID v7); pass it as `before` to page on.
    pub id: hangar_core::EventId,
    /// When it happened.
    pub at: Timestamp,
    /// What happened: `sandbox_failed`, `sandbox_vanished`, `reconciler_action`,
    /// `connect_session`, `node_unreachable`, `node_recovered`.
    pub kind: hangar_core::EventKind,
    /// `info`, `warning` or `error`.
    pub severity: hangar_core::Severity,
    /// One line for people.
    pub message: String,
    /// The sandbox concerned.
    pub sandbox_id: Option<SandboxId>,
    /// The node concerned.
    pub node_id: Option<NodeId>,
    /// The user concerned.
    pub user_id: Option<UserId>,
    /// The connect session concerned.
    pub connect_session_id: Option<ConnectSessionId>,
    /// For sandbox failures, the boot stage reached.
    pub stage: Option<hangar_core::BootStage>,
}

impl From<&hangar_core::Event> for EventView {
    fn from(e: &hangar_core::Event) -> Self {
        Self {
            id: e.id,
            at: e.at,
            kind: e.kind,
            severity: e.severity,
            message: e.message.clone(),
            sandbox_id: e.sandbox_id,
            node_id: e.node_id,
            user_id: e.user_id,
            connect_session_id: e.connect_session_id,
            stage: e.stage,
        }
    }
}

/// One entry of `GET /api/v1/nodes/{id}/sandboxes`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeSandboxView {
    /// The sandbox, as `GET /api/v1/sandboxes/{id}` shows it.
    pub sandbox: SandboxView,
    /// Its newest sample within the silence window, if any.
    pub latest: Option<hangar_core::SandboxSample>,
    /// Not failed and, if running, sampled within the silence window.
    pub healthy: bool,
}

/// `?since=&step=` of the history routes.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Window start: RFC 3339, or a duration before now (`90s`, `15m`, `1h`, `24h`, `7d`).
    /// Default `1h`.
    pub since: Option<String>,
    /// Seconds per point. Default: the stored resolution that fits the window (the collector
    /// interval up to 1 h, 60 up to 1 day, 600 beyond).
    pub step: Option<String>,
}

/// A history window in columns (uPlot's data shape): `t` holds the start of each step in
/// unix seconds; every other array is one numeric field of the sample (`cpu_percent`,
/// `memory_bytes` or `memory_used_bytes`, ...), aligned with `t`, `null` where no data fell
/// in that step. Several samples in one step are averaged; stored 1-minute and 10-minute
/// aggregates are averages (CPU, memory, network) or maxima (pids, disk, limits, totals).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The window's start.
    pub since: Timestamp,
    /// Seconds per point.
    pub step_seconds: u32,
    /// Step starts, unix seconds.
    pub t: Vec<i64>,
    /// One array per numeric field, by the field's name.
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties)]
    pub columns: BTreeMap<String, Vec<Option<f64>>>,
}

impl From<crate::metrics::history::Series> for HistoryView {
    fn from(s: crate::metrics::history::Series) -> Self {
        Self {
            since: s.since,
            step_seconds: s.step_seconds,
            t: s.t,
            columns: s
                .columns
                .into_iter()
                .map(|(name, values)| (name.to_owned(), values))
                .collect(),
        }
    }
}

/// `POST /api/v1/nodes/{id}/heartbeat` body: what a node agent reports every interval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The node's name.
    pub name: String,
    /// Where the control plane reaches the agent, if anywhere.
    #[serde(default)]
    pub address: Option<String>,
    /// Drivers it offers.
    pub drivers: Vec<String>,
    /// The host sample.
    pub node: hangar_core::NodeSample,
    /// One sample per running sandbox.
    #[serde(default)]
    pub sandboxes: Vec<HeartbeatSandbox>,
}

/// One sandbox's sample in a heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSandbox {
    /// The sandbox.
    pub sandbox_id: SandboxId,
    /// Its sample.
    pub sample: hangar_core::SandboxSample,
}

impl From<HeartbeatRequest> for hangar_core::Heartbeat {
    fn from(r: HeartbeatRequest) -> Self {
        Self {
            name: r.name,
            address: r.address,
            drivers: r.drivers,
            node: r.node,
            sandboxes: r
                .sandboxes
                .into_iter()
                .map(|s| (s.sandbox_id, s.sample))
                .collect(),
        }
    }
}

/// `GET /api/v1/events` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Most events to return, 1 to 500 (default 50).
    pub limit: Option<u32>,
    /// Page on: only events older than this one (an event `id`), or than this time
    /// (RFC 3339).
    pub before: Option<String>,
}

/// Data of the `node_sample` stream event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeSampleEvent {
    /// The node.
    pub node_id: NodeId,
    /// Its latest `NodeSample`.
    #[schema(value_type = Object)]
    pub sample: serde_json::Value,
}

/// Data of the `sandbox_sample` stream event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SandboxSampleEvent {
    /// The sandbox.
    pub sandbox_id: SandboxId,
    /// Its latest `SandboxSample`.
    #[schema(value_type = Object)]
    pub sample: serde_json::Value,
}

/// Data of the `resync` stream event: the stream fell behind and lost messages; refetch
/// what is shown (`GET /api/v1/sandboxes`, `/api/v1/events`) and keep reading.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResyncEvent {
    /// How many messages were lost.
    pub missed: u64,
}

/// A way to sign in at `/login/{name}` (`GET /api/v1/signin/providers`), for sign-in pages.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SigninProviderView {
    /// The provider's name in `/login/{name}` (`github` or an OpenID Connect provider's
    /// configured name).
    pub name: String,
    /// What to show on its button (`GitHub`, the configured `display_name`).
    pub label: String,
}
