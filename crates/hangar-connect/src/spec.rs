//! The provider schema: what one `providers/<id>.toml` file may say.
//!
//! Every struct denies unknown fields, so a typo in a provider file is an error at start, not a
//! silently ignored setting. Paths are relative to the sandbox user's `HOME`; JSON pointers
//! follow RFC 6901; regexes use the `regex` crate's syntax.

use std::collections::BTreeMap;
use std::fmt;

use hangar_core::{ConnectFlow, ProviderId};
use serde::{Deserialize, Deserializer};

/// A regex from a provider file, compiled when the file is read.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source`.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            source: source.to_owned(),
            regex: regex::Regex::new(source)?,
        })
    }

    /// The regex as written in the provider file.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex.
    pub fn regex(&self) -> &regex::Regex {
        &self.regex
    }

    /// The first match in `text`: the named group `group` if the regex has it, else the whole
    /// match.
    pub fn find<'t>(&self, text: &'t str, group: &str) -> Option<&'t str> {
        let caps = self.regex.captures(text)?;
        caps.name(group).or_else(|| caps.get(0)).map(|m| m.as_str())
    }

    /// Whether the regex has a named group `group`.
    pub fn has_group(&self, group: &str) -> bool {
        self.regex.capture_names().any(|n| n == Some(group))
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.source).finish()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let source = String::deserialize(d)?;
        Pattern::new(&source)
            .map_err(|e| serde::de::Error::custom(format!("invalid regex {source:?}: {e}")))
    }
}

/// One provider: a CLI whose account hangar connects.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Its id; must equal the file's name without `.toml`.
    pub id: ProviderId,
    /// The name shown to people (`OpenAI Codex`).
    pub display_name: String,
    /// The CLI's executable, looked up on the sandbox's `PATH` (`codex`).
    pub binary: String,
    /// The npm package the CLI ships in, for the record.
    #[serde(default)]
    pub package: Option<String>,
    /// The CLI version the facts in the file were read from.
    #[serde(default)]
    pub version: Option<String>,
    /// How a login runs, per flow. At least one flow must be present.
    pub flows: Flows,
    /// The files the CLI writes when logged in; hangar captures, seals and delivers them.
    #[serde(default)]
    pub files: Vec<CredentialFileSpec>,
    /// Files hangar writes beside the credential so the CLI uses it (for example a config
    /// that pins file storage over a keyring). Not secret.
    #[serde(default)]
    pub extra_files: Vec<ExtraFileSpec>,
    /// Environment set in a CLI sandbox that receives this provider's credential files (for
    /// example to select file storage or the login method).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Environment that must NOT be set in such a sandbox (for example a switch that ties the
    /// file to the machine it was written on).
    #[serde(default)]
    pub unset_env: Vec<String>,
    /// How to ask the CLI whether it is logged in.
    pub status: StatusSpec,
    /// How hangar refreshes the tokens itself; absent when the provider's refresh is unknown.
    #[serde(default)]
    pub refresh: Option<RefreshSpec>,
}

impl ProviderSpec {
    /// The login of `flow`, if the provider offers it.
    pub fn flow(&self, flow: ConnectFlow) -> Option<&FlowSpec> {
        match flow {
            ConnectFlow::Browser => self.flows.browser.as_ref(),
            ConnectFlow::DeviceCode => self.flows.device_code.as_ref(),
            ConnectFlow::PasteCode => self.flows.paste_code.as_ref(),
            ConnectFlow::Token => self.flows.token.as_ref(),
        }
    }

    /// The flows offered, in [`hangar_core::connect::ALL_FLOWS`] order.
    pub fn offered_flows(&self) -> impl Iterator<Item = (ConnectFlow, &FlowSpec)> + '_ {
        hangar_core::connect::ALL_FLOWS
            .into_iter()
            .filter_map(|f| self.flow(f).map(|spec| (f, spec)))
    }

    /// The credential file that holds the refresh token, if any.
    pub fn refresh_token_file(&self) -> Option<&CredentialFileSpec> {
        self.files.iter().find(|f| f.refresh_token.is_some())
    }
}

/// The logins a provider offers, by [`ConnectFlow`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flows {
    /// The provider's own login in the browser sandbox.
    #[serde(default)]
    pub browser: Option<FlowSpec>,
    /// Verification URL + user code shown by hangar.
    #[serde(default)]
    pub device_code: Option<FlowSpec>,
    /// Authorization URL shown by hangar; the person pastes the code back.
    #[serde(default)]
    pub paste_code: Option<FlowSpec>,
    /// A long-lived token or API key the person provides.
    #[serde(default)]
    pub token: Option<FlowSpec>,
}

/// How the person's input reaches the login process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowInput {
    /// The code the person pastes is written, with a newline, to the stdin of the SAME login
    /// process (it holds the PKCE verifier).
    PasteCode,
    /// The token the person gives is written to the login's stdin, then stdin is closed.
    TokenStdin,
}

/// One login flow.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// The login command (`["codex", "login", "--device-auth"]`). Empty only for a token flow
    /// that needs no command (`token_env`).
    #[serde(default)]
    pub argv: Vec<String>,
    /// Environment for the login command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The command needs a terminal (run it on a PTY from the guest agent).
    #[serde(default)]
    pub pty: bool,
    /// Finds the URL to show (authorization or verification URL) in the command's output; the
    /// named group `url` if present, else the whole match.
    #[serde(default)]
    pub url_regex: Option<Pattern>,
    /// Finds the device user code in the output; the named group `code` if present.
    #[serde(default)]
    pub code_regex: Option<Pattern>,
    /// How the person's input reaches the command, if it takes any.
    #[serde(default)]
    pub input: Option<FlowInput>,
    /// Token flows without a command: the environment variable that carries the token into
    /// CLI sandboxes (sealed in the vault like any credential).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A fixed localhost port the CLI's OAuth callback listens on, if it has one.
    #[serde(default)]
    pub callback_port: Option<u16>,
}

/// How a credential file is encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// A JSON document (pointers apply).
    #[default]
    Json,
    /// Anything else; carried as bytes.
    Opaque,
}

/// The unit or encoding of an expiry value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryFormat {
    /// A JSON number: milliseconds since the Unix epoch.
    EpochMs,
    /// A JSON number: seconds since the Unix epoch.
    EpochS,
    /// A JSON string in RFC 3339.
    Rfc3339,
    /// A JSON string holding a JWT whose payload's `exp` claim (epoch seconds, RFC 7519
    /// section 4.1.4) is the expiry. A value that is not such a JWT gives no expiry.
    JwtExp,
}

/// Where an access token's expiry is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpirySpec {
    /// JSON pointer (RFC 6901) to the value.
    pub pointer: String,
    /// Its format.
    pub format: ExpiryFormat,
}

/// An OpenID Connect id token inside a credential file that the CLI insists on.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdTokenSpec {
    /// JSON pointer to the JWT string.
    pub pointer: String,
    /// Claims the payload must carry, or the CLI refuses the file.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The claim naming the account (`email`).
    #[serde(default)]
    pub account_claim: Option<String>,
}

/// One file the CLI writes when logged in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFileSpec {
    /// Path relative to the sandbox user's `HOME` (`.codex/auth.json`), without `..`.
    pub path: String,
    /// Permission bits the file is written with (at most `0o777`).
    #[serde(default = "default_mode")]
    pub mode: u32,
    /// Its encoding.
    #[serde(default)]
    pub format: FileFormat,
    /// The login is incomplete without it. Optional files are captured when present.
    #[serde(default = "default_true")]
    pub required: bool,
    /// JSON pointer to the refresh token; at most one file of a provider has it.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// JSON pointer to the access token.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Where the access token's expiry is.
    #[serde(default)]
    pub expiry: Option<ExpirySpec>,
    /// An id token the CLI validates.
    #[serde(default)]
    pub id_token: Option<IdTokenSpec>,
    /// JSON pointer to a string naming the account (an email address).
    #[serde(default)]
    pub account: Option<String>,
}

const fn default_mode() -> u32 {
    0o600
}

const fn default_true() -> bool {
    true
}

/// A non-secret file hangar writes beside the credential.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraFileSpec {
    /// Path relative to the sandbox user's `HOME`, without `..`.
    pub path: String,
    /// Permission bits (at most `0o777`).
    #[serde(default = "default_mode")]
    pub mode: u32,
    /// The file's text.
    pub contents: String,
}

/// How to ask the CLI whether it is logged in.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StatusSpec {
    /// Run `argv` in a CLI sandbox: exit code 0 means logged in; if `logged_in_regex` is set,
    /// the output (stdout, then stderr) must also match it.
    Command {
        /// The status command.
        argv: Vec<String>,
        /// Must match the output as well, if set.
        #[serde(default)]
        logged_in_regex: Option<Pattern>,
    },
    /// The CLI has no offline status command; hangar can only validate the files.
    FileOnly,
}

/// How a refresh request's body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantFormat {
    /// `application/x-www-form-urlencoded` (RFC 6749 section 6).
    Form,
    /// `application/json` with the same fields.
    Json,
}

/// How hangar refreshes a provider's tokens itself (RFC 6749 section 6), as the CLI would.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSpec {
    /// The token endpoint.
    pub token_url: String,
    /// The CLI's public OAuth client id.
    pub client_id: String,
    /// The CLI's installed-app client secret, where the provider issues one; such secrets are
    /// public by design (shipped in the CLI), not confidential credentials.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The body encoding.
    pub grant_format: GrantFormat,
    /// The `scope` parameter the CLI sends, if any.
    #[serde(default)]
    pub scope: Option<String>,
    /// An environment variable that makes the CLI refresh against another endpoint.
    #[serde(default)]
    pub endpoint_override_env: Option<String>,
}
