//! Typed ids: one newtype per entity so a `UserId` can never be passed where a `SandboxId` is
//! expected. Each wraps a UUID (v7 for new ids, so they sort by creation time) and displays in
//! the canonical hyphenated form, which is also what the API and the store carry.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID. New ids are made at the edge with
            /// `Uuid::now_v7()` (the domain never reads the clock).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The wrapped UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            /// Parses the hyphenated (or simple) UUID form.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Uuid,
                    )))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

typed_id!(
    /// Identifies one sandbox. Also names its runc container and its directory on the node.
    SandboxId
);
typed_id!(
    /// Identifies one user (a human or a service account).
    UserId
);
typed_id!(
    /// Identifies one node (a machine running `hangar agent`, or the local node of `hangar up`).
    NodeId
);
typed_id!(
    /// Identifies one personal access token record (never the secret itself).
    TokenId
);
typed_id!(
    /// Identifies one connect session (one attempt to connect a provider account).
    ConnectSessionId
);
typed_id!(
    /// Identifies one browser session record (never the cookie's secret).
    BrowserSessionId
);
typed_id!(
    /// Identifies one OAuth grant: a person's consent to a client (a "linked app").
    GrantId
);
typed_id!(
    /// Identifies one recorded [`crate::Event`] (v7: sorts by when it was recorded).
    EventId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let id = SandboxId::from_uuid(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
        let text = id.to_string();
        assert_eq!(text, "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(text.parse::<SandboxId>().ok(), Some(id));
        assert!("not-a-uuid".parse::<SandboxId>().is_err());
    }

    #[test]
    fn serializes_as_plain_string() {
        let id = UserId::from_uuid(Uuid::from_u128(1));
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, "\"00000000-0000-0000-0000-000000000001\"");
    }
}
