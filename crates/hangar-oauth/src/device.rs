//! The device authorization grant (RFC 8628): a device code (opaque `hgr_dc_`, stored as its
//! SHA-256) the device polls with, a user code the person types on another screen, and the
//! state machine between them.
//!
//! ```text
//! pending ──approve──▶ approved ──redeem──▶ redeemed
//!    │  └──deny──▶ denied
//!    └──(expiry)──▶ expired ◀──(expiry)── approved
//! ```
//! `denied`, `redeemed` and `expired` are final. [`DeviceState::transition`] is the only
//! place that knows the legal changes; the store applies them as compare-and-set.

use std::fmt;
use std::time::Duration;

use hangar_core::Timestamp;
use rand::{CryptoRng, Rng, RngCore};

use crate::error::{ErrorCode, OAuthError};

/// The user-code alphabet of RFC 8628 section 6.1: 20 consonants, no vowels (no words), no
/// look-alikes.
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Characters in a user code (20^8, about 34.5 bits).
pub const USER_CODE_LEN: usize = 8;
/// How long a device code lives by default (RFC 8628 section 3.2 `expires_in`).
pub const DEVICE_CODE_TTL: Duration = Duration::from_secs(600);
/// The default polling interval (RFC 8628 section 3.2: 5 seconds).
pub const DEFAULT_INTERVAL_S: u32 = 5;
/// What `slow_down` adds to the interval (RFC 8628 section 3.5).
pub const SLOW_DOWN_STEP_S: u32 = 5;
/// The interval never grows beyond this.
pub const MAX_INTERVAL_S: u32 = 60;

/// A user code: 8 characters of [`USER_CODE_ALPHABET`], shown as `XXXX-XXXX`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserCode(String);

impl UserCode {
    /// A new code, each character uniform over the alphabet.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let code = (0..USER_CODE_LEN)
            .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
            .collect();
        Self(code)
    }

    /// Normalizes what a person typed (RFC 8628 section 6.1): case, dashes and spaces are
    /// ignored. `None` if it cannot be a user code.
    pub fn parse(input: &str) -> Option<Self> {
        if input.len() > 32 {
            return None;
        }
        let code: String = input
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let ok =
            code.len() == USER_CODE_LEN && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
        ok.then_some(Self(code))
    }

    /// The stored form: 8 characters, no dash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shown form: `XXXX-XXXX`.
    pub fn display(&self) -> String {
        let (a, b) = self.0.split_at(USER_CODE_LEN / 2);
        format!("{a}-{b}")
    }
}

impl fmt::Debug for UserCode {
    /// A user code is a short-lived secret of sorts: only its first two characters show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserCode({}..)", &self.0[..2])
    }
}

/// Where a device authorization stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceState {
    /// Waiting for the person.
    Pending,
    /// The person approved; the next poll gets tokens.
    Approved,
    /// The person denied (final).
    Denied,
    /// Tokens were issued (final).
    Redeemed,
    /// It expired before being redeemed (final).
    Expired,
}

/// A change the state machine does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a device authorization cannot go from {from} to {to}")]
pub struct InvalidDeviceTransition {
    /// The state it is in.
    pub from: DeviceState,
    /// The state asked for.
    pub to: DeviceState,
}

impl DeviceState {
    /// Every state.
    pub const ALL: [DeviceState; 5] = [
        DeviceState::Pending,
        DeviceState::Approved,
        DeviceState::Denied,
        DeviceState::Redeemed,
        DeviceState::Expired,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Approved => "approved",
            DeviceState::Denied => "denied",
            DeviceState::Redeemed => "redeemed",
            DeviceState::Expired => "expired",
        }
    }

    /// Parses the stored form.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing can follow.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            DeviceState::Denied | DeviceState::Redeemed | DeviceState::Expired
        )
    }

    /// The one function that knows the legal changes.
    pub fn transition(self, to: DeviceState) -> Result<DeviceState, InvalidDeviceTransition> {
        use DeviceState::*;
        match (self, to) {
            (Pending, Approved | Denied | Expired) | (Approved, Redeemed | Expired) => Ok(to),
            _ => Err(InvalidDeviceTransition { from: self, to }),
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored facts a poll is decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevicePollState {
    /// The state.
    pub state: DeviceState,
    /// When the device code stops working.
    pub expires_at: Timestamp,
    /// The current polling interval, seconds.
    pub interval_s: u32,
    /// When the device last polled, if it did.
    pub last_polled_at: Option<Timestamp>,
}

/// What to do with one poll of the token endpoint (RFC 8628 section 3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollDecision {
    /// Approved: issue tokens (and move `approved -> redeemed` in the same transaction).
    Issue,
    /// Answer `error`; record the poll at `now` with `interval_s`, and move to `expired` if
    /// `expire` is set.
    Refuse {
        /// The error (`authorization_pending`, `slow_down`, `access_denied`,
        /// `expired_token`, or `invalid_grant` for a code already redeemed).
        error: OAuthError,
        /// The interval from now on (raised by [`SLOW_DOWN_STEP_S`] on `slow_down`).
        interval_s: u32,
        /// Whether the authorization expired with this poll.
        expire: bool,
    },
}

impl DevicePollState {
    /// Decides a poll at `now`.
    pub fn poll(&self, now: Timestamp) -> PollDecision {
        let refuse = |code, why: &'static str, interval_s, expire| PollDecision::Refuse {
            error: OAuthError::new(code, why),
            interval_s,
            expire,
        };
        match self.state {
            DeviceState::Denied => {
                return refuse(
                    ErrorCode::AccessDenied,
                    "the request was denied",
                    self.interval_s,
                    false,
                )
            }
            DeviceState::Redeemed => {
                return refuse(
                    ErrorCode::InvalidGrant,
                    "the device code was already used",
                    self.interval_s,
                    false,
                )
            }
            DeviceState::Expired => {
                return refuse(
                    ErrorCode::ExpiredToken,
                    "the device code has expired",
                    self.interval_s,
                    false,
                )
            }
            DeviceState::Pending | DeviceState::Approved => {}
        }
        if now >= self.expires_at {
            return refuse(
                ErrorCode::ExpiredToken,
                "the device code has expired",
                self.interval_s,
                true,
            );
        }
        let too_soon = self
            .last_polled_at
            .is_some_and(|last| now.unix_ms() - last.unix_ms() < i64::from(self.interval_s) * 1000);
        if too_soon {
            let interval = (self.interval_s + SLOW_DOWN_STEP_S).min(MAX_INTERVAL_S);
            return refuse(ErrorCode::SlowDown, "polling too often", interval, false);
        }
        match self.state {
            DeviceState::Approved => PollDecision::Issue,
            _ => refuse(
                ErrorCode::AuthorizationPending,
                "the person has not answered yet",
                self.interval_s,
                false,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn transition_table_is_exact() {
        use DeviceState::*;
        let legal = [
            (Pending, Approved),
            (Pending, Denied),
            (Pending, Expired),
            (Approved, Redeemed),
            (Approved, Expired),
        ];
        for from in DeviceState::ALL {
            for to in DeviceState::ALL {
                let ok = legal.contains(&(from, to));
                assert_eq!(from.transition(to).is_ok(), ok, "{from} -> {to}");
            }
            assert_eq!(DeviceState::parse(from.as_str()), Some(from));
        }
    }

    #[test]
    fn user_codes_use_the_rfc_alphabet_and_normalize() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..100 {
            let code = UserCode::generate(&mut rng);
            assert_eq!(code.as_str().len(), 8);
            assert!(code
                .as_str()
                .bytes()
                .all(|b| USER_CODE_ALPHABET.contains(&b)));
            let shown = code.display();
            assert_eq!(shown.len(), 9);
            assert_eq!(UserCode::parse(&shown), Some(code.clone()));
            assert_eq!(UserCode::parse(&shown.to_lowercase()), Some(code.clone()));
            assert!(!format!("{code:?}").contains(code.as_str()));
        }
        assert_eq!(
            UserCode::parse("bcdf ghjk").map(|c| c.display()),
            Some("BCDF-GHJK".into())
        );
        assert_eq!(UserCode::parse("ABCD-EFGH"), None); // vowels are not in the alphabet
        assert_eq!(UserCode::parse("BCDF-GHJ"), None);
    }

    #[test]
    fn polling_follows_rfc8628() {
        let t = Timestamp::from_unix_ms;
        let pending = DevicePollState {
            state: DeviceState::Pending,
            expires_at: t(600_000),
            interval_s: 5,
            last_polled_at: None,
        };
        let code = |d: PollDecision| match d {
            PollDecision::Issue => ("issue", 0, false),
            PollDecision::Refuse {
                error,
                interval_s,
                expire,
            } => (error.code.as_str(), interval_s, expire),
        };
        assert_eq!(
            code(pending.poll(t(0))),
            ("authorization_pending", 5, false)
        );
        let polled = DevicePollState {
            last_polled_at: Some(t(0)),
            ..pending
        };
        assert_eq!(code(polled.poll(t(4_999))), ("slow_down", 10, false));
        assert_eq!(
            code(polled.poll(t(5_000))),
            ("authorization_pending", 5, false)
        );
        let approved = DevicePollState {
            state: DeviceState::Approved,
            ..polled
        };
        assert_eq!(code(approved.poll(t(5_000))), ("issue", 0, false));
        assert_eq!(code(approved.poll(t(600_000))), ("expired_token", 5, true));
        let denied = DevicePollState {
            state: DeviceState::Denied,
            ..polled
        };
        assert_eq!(code(denied.poll(t(5_000))), ("access_denied", 5, false));
        let redeemed = DevicePollState {
            state: DeviceState::Redeemed,
            ..polled
        };
        assert_eq!(code(redeemed.poll(t(5_000))), ("invalid_grant", 5, false));
        let slowest = DevicePollState {
            interval_s: MAX_INTERVAL_S,
            ..polled
        };
        assert_eq!(code(slowest.poll(t(1))).1, MAX_INTERVAL_S);
    }
}
