//! Connect sessions: one attempt to connect a provider account (Claude Code, Codex, Gemini CLI).
//!
//! ```text
//!            +----------+  login running  +---------------+  files seen  +-----------+  sealed  +-----------+
//!  start --> | starting | --------------> | awaiting_user | -----------> | capturing | -------> | completed |
//!            +----------+                 +---------------+              +-----------+          +-----------+
//!                 |                              |                             |                 (FINAL)
//!                 +------------------------------+-----------------------------+
//!                                                |
//!                          deadline -> expired / error -> failed / user -> cancelled   (all terminal)
//! ```
//!
//! Every change goes through [`ConnectState::transition`], which the store applies as a
//! compare-and-set. `completed` has no way out at all: whatever the browser sandbox does after the
//! credential is sealed (crash, non-zero exit, teardown), the session stays completed.
//!
//! Providers are data (see the `hangar-connect` crate); here a provider is only its validated
//! [`ProviderId`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{ConnectSessionId, SandboxId, UserId};
use crate::time::Timestamp;

/// The name of a provider (a CLI whose account is connected): `claude_code`, `codex`,
/// `gemini_cli`. Matches `[a-z][a-z0-9_]{1,31}`, so it is safe in paths, URLs and log lines.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProviderId(String);

/// The text is not a valid provider id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid provider id {value:?}: expected [a-z][a-z0-9_]{{1,31}}")]
pub struct InvalidProviderId {
    /// The text given (provider ids are not secret).
    pub value: String,
}

impl ProviderId {
    /// Longest id accepted, in bytes.
    pub const MAX_LEN: usize = 32;

    /// Validates and wraps `value`.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidProviderId> {
        let value = value.into();
        if Self::is_valid(&value) {
            Ok(Self(value))
        } else {
            Err(InvalidProviderId { value })
        }
    }

    /// Whether `s` matches `[a-z][a-z0-9_]{1,31}`.
    pub fn is_valid(s: &str) -> bool {
        let bytes = s.as_bytes();
        (2..=Self::MAX_LEN).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ProviderId {
    type Err = InvalidProviderId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ProviderId {
    type Error = InvalidProviderId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ProviderId> for String {
    fn from(id: ProviderId) -> Self {
        id.0
    }
}

impl utoipa::PartialSchema for ProviderId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[a-z][a-z0-9_]{1,31}$"))
            .into()
    }
}

impl utoipa::ToSchema for ProviderId {}

/// How the person proves who they are to the provider.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ConnectFlow {
    /// The provider's own login runs in a browser sandbox that the person drives through the
    /// viewer page; the CLI's localhost callback lands inside that sandbox.
    Browser,
    /// The CLI prints a verification URL and a user code; the person enters the code elsewhere.
    DeviceCode,
    /// The CLI prints an authorization URL; the person pastes the code it shows back.
    PasteCode,
    /// A long-lived token or API key the person already has (`claude setup-token`,
    /// `OPENAI_API_KEY`, `GEMINI_API_KEY`).
    Token,
}

/// All flows, in declaration order.
pub const ALL_FLOWS: [ConnectFlow; 4] = [
    ConnectFlow::Browser,
    ConnectFlow::DeviceCode,
    ConnectFlow::PasteCode,
    ConnectFlow::Token,
];

impl ConnectFlow {
    /// The stored and displayed name (`browser`, `device_code`, `paste_code`, `token`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::DeviceCode => "device_code",
            Self::PasteCode => "paste_code",
            Self::Token => "token",
        }
    }
}

impl fmt::Display for ConnectFlow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name did not match any flow or state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown connect {kind} {value:?}")]
pub struct UnknownConnectName {
    /// `flow` or `state`.
    pub kind: &'static str,
    /// The text given.
    pub value: String,
}

impl FromStr for ConnectFlow {
    type Err = UnknownConnectName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_FLOWS
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownConnectName {
                kind: "flow",
                value: s.to_owned(),
            })
    }
}

/// Where a connect session is. Stored as the snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectState {
    /// The browser sandbox is booting and the CLI's login command is starting.
    Starting,
    /// The person must act: sign in, enter the device code, or paste the code back.
    AwaitingUser,
    /// The CLI wrote its credential files; they are being validated and sealed.
    Capturing,
    /// The credential is sealed in the vault. FINAL: nothing moves a session out of it.
    Completed,
    /// The sign-in deadline passed before a credential was captured. Terminal.
    Expired,
    /// Something went wrong; the session's `failure` says what. Terminal.
    Failed,
    /// The person cancelled. Terminal.
    Cancelled,
}

/// All states, in declaration order (for exhaustive tables in tests and docs).
pub const ALL_CONNECT_STATES: [ConnectState; 7] = [
    ConnectState::Starting,
    ConnectState::AwaitingUser,
    ConnectState::Capturing,
    ConnectState::Completed,
    ConnectState::Expired,
    ConnectState::Failed,
    ConnectState::Cancelled,
];

/// A transition that the connect lifecycle does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connect session cannot go from {from} to {to}")]
pub struct InvalidConnectTransition {
    /// The state the session was in.
    pub from: ConnectState,
    /// The state that was asked for.
    pub to: ConnectState,
}

impl ConnectState {
    /// The stored and displayed name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::AwaitingUser => "awaiting_user",
            Self::Capturing => "capturing",
            Self::Completed => "completed",
            Self::Expired => "expired",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Checks `self -> to` against the lifecycle; the one place that knows which changes are
    /// legal. Returns `to` so callers can write `state = state.transition(to)?`.
    pub fn transition(self, to: ConnectState) -> Result<ConnectState, InvalidConnectTransition> {
        use ConnectState::*;
        let ok = match (self, to) {
            // Terminal states are final, `completed` above all: no pair leaves them.
            (Completed | Expired | Failed | Cancelled, _) => false,
            (Starting, AwaitingUser) => true,
            (AwaitingUser, Capturing) => true,
            (Capturing, Completed) => true,
            (Starting | AwaitingUser | Capturing, Expired | Failed | Cancelled) => true,
            (Starting | AwaitingUser | Capturing, Starting | AwaitingUser | Capturing) => false,
            (Starting | AwaitingUser, Completed) => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(InvalidConnectTransition { from: self, to })
        }
    }

    /// No change is possible any more.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Expired | Self::Failed | Self::Cancelled
        )
    }

    /// The session's channel accepts credential files only here.
    pub const fn accepts_credentials(self) -> bool {
        matches!(self, Self::AwaitingUser | Self::Capturing)
    }

    /// The person may cancel.
    pub fn can_cancel(self) -> bool {
        self.transition(Self::Cancelled).is_ok()
    }
}

impl fmt::Display for ConnectState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectState {
    type Err = UnknownConnectName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL_CONNECT_STATES
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownConnectName {
                kind: "state",
                value: s.to_owned(),
            })
    }
}

/// What the person is shown to act on, by flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectPrompt {
    /// Device code: open `uri` anywhere and enter `user_code`.
    VerificationUri {
        /// The provider's verification page.
        uri: String,
        /// The short code to enter there (not a bearer secret: useless without the person's
        /// sign-in).
        user_code: String,
    },
    /// Paste code: open `url`, sign in, and paste the code shown back into hangar.
    AuthorizeUrl {
        /// The provider's authorization URL, as the CLI printed it.
        url: String,
    },
    /// Browser: sign in through hangar's viewer page on the browser sandbox.
    Viewer,
}

/// One connect session as the control plane records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectSession {
    /// Its id.
    pub id: ConnectSessionId,
    /// The user connecting their account; nobody else can see the session.
    pub owner: UserId,
    /// The provider being connected.
    pub provider: ProviderId,
    /// The flow chosen.
    pub flow: ConnectFlow,
    /// Its state.
    pub state: ConnectState,
    /// The browser sandbox in which the login runs, once created.
    pub browser_sandbox: Option<SandboxId>,
    /// When it was started.
    pub created_at: Timestamp,
    /// The sign-in deadline: a session not completed by then becomes `expired`.
    pub expires_at: Timestamp,
    /// When its record last changed.
    pub updated_at: Timestamp,
    /// When it became `completed` (the same transaction that sealed the credential).
    pub completed_at: Option<Timestamp>,
    /// Why it failed, when `state` is `failed`. Never contains secrets.
    pub failure: Option<String>,
    /// What the person is shown to act on, once known.
    pub prompt: Option<ConnectPrompt>,
}

impl ConnectSession {
    /// How long the person has to sign in unless configured otherwise (15 minutes).
    pub const DEFAULT_SIGN_IN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

    /// A new session in `starting`, whose sign-in deadline is `now + sign_in_timeout`.
    pub fn new(
        id: ConnectSessionId,
        owner: UserId,
        provider: ProviderId,
        flow: ConnectFlow,
        now: Timestamp,
        sign_in_timeout: Duration,
    ) -> Self {
        let timeout_ms = i64::try_from(sign_in_timeout.as_millis()).unwrap_or(i64::MAX);
        Self {
            id,
            owner,
            provider,
            flow,
            state: ConnectState::Starting,
            browser_sandbox: None,
            created_at: now,
            expires_at: now.plus_ms(timeout_ms),
            updated_at: now,
            completed_at: None,
            failure: None,
            prompt: None,
        }
    }

    /// Moves to `to` at `now` if the lifecycle allows it, recording `completed_at` on
    /// completion. The store must still apply the change as a compare-and-set on `state`.
    pub fn advance(
        &mut self,
        to: ConnectState,
        now: Timestamp,
    ) -> Result<(), InvalidConnectTransition> {
        self.state = self.state.transition(to)?;
        self.updated_at = now;
        if to == ConnectState::Completed {
            self.completed_at = Some(now);
        }
        Ok(())
    }

    /// Moves to `failed` with `reason` (a short description, never a secret).
    pub fn fail(
        &mut self,
        reason: impl Into<String>,
        now: Timestamp,
    ) -> Result<(), InvalidConnectTransition> {
        self.advance(ConnectState::Failed, now)?;
        self.failure = Some(reason.into());
        Ok(())
    }

    /// The sign-in deadline has passed and the session is still open: it must become `expired`.
    pub fn is_overdue(&self, now: Timestamp) -> bool {
        !self.state.is_terminal() && now >= self.expires_at
    }

    /// The session's channel may take credential files at `now`: the state accepts them and
    /// the deadline has not passed.
    pub fn accepts_credentials_at(&self, now: Timestamp) -> bool {
        self.state.accepts_credentials() && now < self.expires_at
    }
}

/// What `hangar connect status` shows for one connected provider.
///
/// An offline status check (`claude auth status`, `codex login status`) says "logged in" even
/// for an expired token, so it proves the files are in place and well formed, not that the
/// token is valid: both the check's output and the token expiry are recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialStatus {
    /// The provider.
    pub provider: ProviderId,
    /// When the credential was first sealed.
    pub connected_since: Timestamp,
    /// When the CLI's own status command (or the file check) last ran.
    pub last_check_at: Option<Timestamp>,
    /// What it printed (trimmed, without secrets).
    pub last_check_output: Option<String>,
    /// Whether it said "logged in".
    pub last_check_ok: Option<bool>,
    /// When the current access token expires, if the credential says.
    pub access_token_expires_at: Option<Timestamp>,
    /// When hangar last refreshed the tokens.
    pub last_refresh_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;
    use ConnectState::*;

    /// The full table of legal transitions; every other pair must be refused.
    const LEGAL: &[(ConnectState, ConnectState)] = &[
        (Starting, AwaitingUser),
        (Starting, Expired),
        (Starting, Failed),
        (Starting, Cancelled),
        (AwaitingUser, Capturing),
        (AwaitingUser, Expired),
        (AwaitingUser, Failed),
        (AwaitingUser, Cancelled),
        (Capturing, Completed),
        (Capturing, Expired),
        (Capturing, Failed),
        (Capturing, Cancelled),
    ];

    #[test]
    fn transition_table_is_exact() {
        for from in ALL_CONNECT_STATES {
            for to in ALL_CONNECT_STATES {
                let expected = LEGAL.contains(&(from, to));
                let got = from.transition(to);
                assert_eq!(got.is_ok(), expected, "{from} -> {to}");
                if !expected {
                    assert_eq!(got, Err(InvalidConnectTransition { from, to }));
                }
            }
        }
    }

    #[test]
    fn completed_has_no_way_out() {
        for to in ALL_CONNECT_STATES {
            assert!(Completed.transition(to).is_err(), "completed -> {to}");
        }
        assert!(Completed.is_terminal());
        assert!(!Completed.accepts_credentials());
        assert!(!Completed.can_cancel());
    }

    #[test]
    fn terminal_states_are_final_and_guards_agree() {
        for st in ALL_CONNECT_STATES {
            let can_leave = ALL_CONNECT_STATES
                .into_iter()
                .any(|to| st.transition(to).is_ok());
            assert_eq!(st.is_terminal(), !can_leave, "{st}");
            assert_eq!(
                st.accepts_credentials(),
                matches!(st, AwaitingUser | Capturing),
                "{st}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for st in ALL_CONNECT_STATES {
            assert_eq!(st.as_str().parse::<ConnectState>(), Ok(st));
            let json = serde_json::to_string(&st).expect("serialize");
            assert_eq!(json, format!("\"{}\"", st.as_str()));
        }
        for flow in ALL_FLOWS {
            assert_eq!(flow.as_str().parse::<ConnectFlow>(), Ok(flow));
            let json = serde_json::to_string(&flow).expect("serialize");
            assert_eq!(json, format!("\"{}\"", flow.as_str()));
        }
        assert!("done".parse::<ConnectState>().is_err());
        assert!("magic".parse::<ConnectFlow>().is_err());
    }

    #[test]
    fn provider_ids_are_validated() {
        for ok in ["claude_code", "codex", "gemini_cli", "ab", "a1_2"] {
            assert!(ProviderId::new(ok).is_ok(), "{ok}");
        }
        let too_long = "a".repeat(33);
        for bad in [
            "", "a", "Codex", "1codex", "_x", "co-dex", "co dex", "../x", &too_long,
        ] {
            assert!(ProviderId::new(bad).is_err(), "{bad:?}");
        }
        assert!(ProviderId::new("a".repeat(32)).is_ok());
        let id: ProviderId = serde_json::from_str("\"codex\"").expect("json");
        assert_eq!(id.as_str(), "codex");
        assert!(serde_json::from_str::<ProviderId>("\"Codex\"").is_err());
    }

    #[test]
    fn prompt_serializes_tagged() {
        let p = ConnectPrompt::VerificationUri {
            uri: "https://auth.openai.com/codex/device".into(),
            user_code: "ABCD-EFGH".into(),
        };
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(
            json,
            r#"{"kind":"verification_uri","uri":"https://auth.openai.com/codex/device","user_code":"ABCD-EFGH"}"#
        );
        assert_eq!(
            serde_json::to_string(&ConnectPrompt::Viewer).expect("json"),
            r#"{"kind":"viewer"}"#
        );
    }

    fn session(now: Timestamp) -> ConnectSession {
        ConnectSession::new(
            ConnectSessionId::from_uuid(Uuid::from_u128(1)),
            UserId::from_uuid(Uuid::from_u128(2)),
            ProviderId::new("codex").expect("id"),
            ConnectFlow::Browser,
            now,
            ConnectSession::DEFAULT_SIGN_IN_TIMEOUT,
        )
    }

    #[test]
    fn session_walks_the_happy_path_and_stays_completed() {
        let t0 = Timestamp::from_unix_ms(1_000);
        let mut s = session(t0);
        assert_eq!(s.state, Starting);
        assert_eq!(
            s.expires_at,
            Timestamp::from_unix_ms(1_000 + 15 * 60 * 1000)
        );
        assert!(!s.accepts_credentials_at(t0));
        s.advance(AwaitingUser, t0.plus_ms(10)).expect("awaiting");
        assert!(s.accepts_credentials_at(t0.plus_ms(10)));
        s.advance(Capturing, t0.plus_ms(20)).expect("capturing");
        s.advance(Completed, t0.plus_ms(30)).expect("completed");
        assert_eq!(s.completed_at, Some(t0.plus_ms(30)));
        // The browser sandbox crashing or being torn down afterwards changes nothing.
        assert!(s
            .fail("browser sandbox exited 137", t0.plus_ms(40))
            .is_err());
        assert!(s.advance(Expired, t0.plus_ms(40)).is_err());
        assert_eq!(s.state, Completed);
        assert_eq!(s.failure, None);
        assert!(!s.is_overdue(s.expires_at.plus_ms(1)));
    }

    #[test]
    fn deadline_closes_the_channel() {
        let t0 = Timestamp::from_unix_ms(0);
        let mut s = session(t0);
        s.advance(AwaitingUser, t0).expect("awaiting");
        assert!(!s.is_overdue(s.expires_at.plus_ms(-1)));
        assert!(s.is_overdue(s.expires_at));
        assert!(!s.accepts_credentials_at(s.expires_at));
        s.fail("login command exited 1", t0.plus_ms(5))
            .expect("fail");
        assert_eq!(s.state, Failed);
        assert_eq!(s.failure.as_deref(), Some("login command exited 1"));
        assert!(!s.is_overdue(s.expires_at));
    }

    #[test]
    fn credential_status_serializes() {
        let st = CredentialStatus {
            provider: ProviderId::new("claude_code").expect("id"),
            connected_since: Timestamp::from_unix_ms(0),
            last_check_at: None,
            last_check_output: None,
            last_check_ok: None,
            access_token_expires_at: Some(Timestamp::from_unix_ms(1_000)),
            last_refresh_at: None,
        };
        let json = serde_json::to_value(&st).expect("json");
        assert_eq!(json["provider"], "claude_code");
        assert_eq!(json["access_token_expires_at"], "1970-01-01T00:00:01.000Z");
    }
}
