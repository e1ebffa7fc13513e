//! Conversions between domain values and column values.
//!
//! The JSON kept in TEXT columns has its own store-owned shape (below), independent of the API's
//! serde shape of the same domain types, so changing the wire format never breaks stored rows.

use std::str::FromStr;

use hangar_core::{BootEvent, BootStage, ConnectPrompt, Failure, FailureKind, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::StoreError;

/// Reads a column, naming it in the error if it is missing or of the wrong type.
pub(crate) fn col<'r, T>(row: &'r AnyRow, name: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(name)
        .map_err(|err| StoreError::corrupt(name, err))
}

/// Parses a typed id (or any `FromStr` value) stored as text.
pub(crate) fn parse<T>(what: &'static str, text: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|err| StoreError::corrupt(what, err))
}

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms)
}

pub(crate) fn opt_ts(ms: Option<i64>) -> Option<Timestamp> {
    ms.map(Timestamp::from_unix_ms)
}

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.unix_ms()
}

pub(crate) fn opt_ms(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::unix_ms)
}

/// A `u32` column read back from a BIGINT.
pub(crate) fn u32_col(what: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|err| StoreError::corrupt(what, err))
}

pub(crate) fn bool_col(what: &'static str, value: i64) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::corrupt(what, format!("{other} is not 0 or 1"))),
    }
}

pub(crate) fn boot_stage_from_str(what: &'static str, text: &str) -> Result<BootStage, StoreError> {
    [
        BootStage::Created,
        BootStage::RootfsReady,
        BootStage::ProcessStarted,
        BootStage::AgentReady,
    ]
    .into_iter()
    .find(|s| s.as_str() == text)
    .ok_or_else(|| StoreError::corrupt(what, format!("unknown boot stage {text:?}")))
}

fn failure_kind_str(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::BootTimeout => "boot_timeout",
        FailureKind::BootError => "boot_error",
        FailureKind::Vanished => "vanished",
        FailureKind::Interrupted => "interrupted",
    }
}

fn failure_kind_from_str(text: &str) -> Result<FailureKind, StoreError> {
    [
        FailureKind::BootTimeout,
        FailureKind::BootError,
        FailureKind::Vanished,
        FailureKind::Interrupted,
    ]
    .into_iter()
    .find(|k| failure_kind_str(*k) == text)
    .ok_or_else(|| {
        StoreError::corrupt(
            "sandboxes.failure",
            format!("unknown failure kind {text:?}"),
        )
    })
}

/// `sandboxes.boot`: `[{"stage":"created","at_ms":1700000000000}, ...]`, in the order reached.
#[derive(Serialize, Deserialize)]
struct StoredBootEvent {
    stage: String,
    at_ms: i64,
}

pub(crate) fn encode_boot(events: &[BootEvent]) -> Result<String, StoreError> {
    let stored: Vec<StoredBootEvent> = events
        .iter()
        .map(|e| StoredBootEvent {
            stage: e.stage.as_str().to_owned(),
            at_ms: e.at.unix_ms(),
        })
        .collect();
    serde_json::to_string(&stored).map_err(|err| StoreError::corrupt("sandboxes.boot", err))
}

pub(crate) fn decode_boot(text: &str) -> Result<Vec<BootEvent>, StoreError> {
    const WHAT: &str = "sandboxes.boot";
    let stored: Vec<StoredBootEvent> =
        serde_json::from_str(text).map_err(|err| StoreError::corrupt(WHAT, err))?;
    stored
        .into_iter()
        .map(|e| {
            Ok(BootEvent {
                stage: boot_stage_from_str(WHAT, &e.stage)?,
                at: Timestamp::from_unix_ms(e.at_ms),
            })
        })
        .collect()
}

/// `sandboxes.failure`:
/// `{"kind":"boot_timeout","stage_reached":"rootfs_ready"|null,"message":"...","console_tail":["..."]}`.
#[derive(Serialize, Deserialize)]
struct StoredFailure {
    kind: String,
    stage_reached: Option<String>,
    message: String,
    console_tail: Vec<String>,
}

pub(crate) fn encode_failure(failure: Option<&Failure>) -> Result<Option<String>, StoreError> {
    let Some(f) = failure else { return Ok(None) };
    let stored = StoredFailure {
        kind: failure_kind_str(f.kind).to_owned(),
        stage_reached: f.stage_reached.map(|s| s.as_str().to_owned()),
        message: f.message.clone(),
        console_tail: f.console_tail.clone(),
    };
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(|err| StoreError::corrupt("sandboxes.failure", err))
}

pub(crate) fn decode_failure(text: Option<&str>) -> Result<Option<Failure>, StoreError> {
    const WHAT: &str = "sandboxes.failure";
    let Some(text) = text else { return Ok(None) };
    let stored: StoredFailure =
        serde_json::from_str(text).map_err(|err| StoreError::corrupt(WHAT, err))?;
    Ok(Some(Failure {
        kind: failure_kind_from_str(&stored.kind)?,
        stage_reached: stored
            .stage_reached
            .as_deref()
            .map(|s| boot_stage_from_str(WHAT, s))
            .transpose()?,
        message: stored.message,
        console_tail: stored.console_tail,
    }))
}

/// `connect_sessions.prompt`, tagged by `kind`:
/// `{"kind":"verification_uri","uri":"...","user_code":"..."}`,
/// `{"kind":"authorize_url","url":"..."}`, or `{"kind":"viewer"}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum StoredPrompt {
    VerificationUri { uri: String, user_code: String },
    AuthorizeUrl { url: String },
    Viewer,
}

pub(crate) fn encode_prompt(prompt: Option<&ConnectPrompt>) -> Result<Option<String>, StoreError> {
    let Some(prompt) = prompt else {
        return Ok(None);
    };
    let stored = match prompt.clone() {
        ConnectPrompt::VerificationUri { uri, user_code } => {
            StoredPrompt::VerificationUri { uri, user_code }
        }
        ConnectPrompt::AuthorizeUrl { url } => StoredPrompt::AuthorizeUrl { url },
        ConnectPrompt::Viewer => StoredPrompt::Viewer,
    };
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(|err| StoreError::corrupt("connect_sessions.prompt", err))
}

pub(crate) fn decode_prompt(text: Option<&str>) -> Result<Option<ConnectPrompt>, StoreError> {
    let Some(text) = text else { return Ok(None) };
    let stored: StoredPrompt = serde_json::from_str(text)
        .map_err(|err| StoreError::corrupt("connect_sessions.prompt", err))?;
    Ok(Some(match stored {
        StoredPrompt::VerificationUri { uri, user_code } => {
            ConnectPrompt::VerificationUri { uri, user_code }
        }
        StoredPrompt::AuthorizeUrl { url } => ConnectPrompt::AuthorizeUrl { url },
        StoredPrompt::Viewer => ConnectPrompt::Viewer,
    }))
}

/// `nodes.drivers`: `["runc","qemu"]`.
pub(crate) fn encode_strings(what: &'static str, items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|err| StoreError::corrupt(what, err))
}

pub(crate) fn decode_strings(what: &'static str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::corrupt(what, err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_events_round_trip_in_store_shape() {
        let events = vec![
            BootEvent {
                stage: BootStage::Created,
                at: Timestamp::from_unix_ms(1),
            },
            BootEvent {
                stage: BootStage::AgentReady,
                at: Timestamp::from_unix_ms(-5),
            },
        ];
        let text = encode_boot(&events).expect("encode");
        assert_eq!(
            text,
            r#"[{"stage":"created","at_ms":1},{"stage":"agent_ready","at_ms":-5}]"#
        );
        assert_eq!(decode_boot(&text).expect("decode"), events);
        assert!(matches!(
            decode_boot(r#"[{"stage":"warp","at_ms":1}]"#),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn failure_round_trips_every_kind() {
        for kind in [
            FailureKind::BootTimeout,
            FailureKind::BootError,
            FailureKind::Vanished,
            FailureKind::Interrupted,
        ] {
            let f = Failure {
                kind,
                stage_reached: Some(BootStage::ProcessStarted),
                message: "m".into(),
                console_tail: vec!["a".into(), "b".into()],
            };
            let text = encode_failure(Some(&f)).expect("encode");
            assert_eq!(decode_failure(text.as_deref()).expect("decode"), Some(f));
        }
        assert_eq!(decode_failure(None).expect("none"), None);
    }

    #[test]
    fn prompts_round_trip_in_store_shape() {
        let prompts = [
            ConnectPrompt::VerificationUri {
                uri: "https://example.test/device".into(),
                user_code: "ABCD-EFGH".into(),
            },
            ConnectPrompt::AuthorizeUrl {
                url: "https://example.test/authorize?a=1&b=\"2\"".into(),
            },
            ConnectPrompt::Viewer,
        ];
        for prompt in prompts {
            let text = encode_prompt(Some(&prompt)).expect("encode");
            assert_eq!(
                decode_prompt(text.as_deref()).expect("decode"),
                Some(prompt)
            );
        }
        assert_eq!(
            encode_prompt(Some(&ConnectPrompt::Viewer)).expect("encode"),
            Some(r#"{"kind":"viewer"}"#.to_owned())
        );
        assert_eq!(encode_prompt(None).expect("none"), None);
        assert_eq!(decode_prompt(None).expect("none"), None);
        assert!(matches!(
            decode_prompt(Some(r#"{"kind":"telepathy"}"#)),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn booleans_are_strict() {
        assert!(!bool_col("x", 0).expect("0"));
        assert!(bool_col("x", 1).expect("1"));
        assert!(bool_col("x", 2).is_err());
    }
}
