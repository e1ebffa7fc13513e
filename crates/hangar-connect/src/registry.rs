//! Loading and validating the provider files.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use hangar_core::{ConnectFlow, ProviderId};

use crate::spec::{FileFormat, FlowInput, FlowSpec, ProviderSpec, StatusSpec};

/// A provider file could not be read or says something hangar cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The providers directory could not be listed.
    #[error("cannot read providers directory {dir}")]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A provider file could not be read.
    #[error("cannot read provider file {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A provider file is not valid TOML for the schema (unknown field, wrong type, bad regex,
    /// invalid id).
    #[error("provider file {path} does not match the schema")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause, with the key path.
        #[source]
        source: toml::de::Error,
    },
    /// A provider file parses but breaks a rule.
    #[error("provider file {path}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending field (`files[0].path`, `flows.device_code.code_regex`).
        field: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two files declare the same provider id.
    #[error("provider {id} is declared twice: {first} and {second}")]
    DuplicateId {
        /// The id.
        id: ProviderId,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
}

/// The validated providers, by id.
#[derive(Clone, Debug, Default)]
pub struct ProviderRegistry {
    providers: BTreeMap<ProviderId, ProviderSpec>,
}

impl ProviderRegistry {
    /// The provider `id`, if loaded.
    pub fn get(&self, id: &ProviderId) -> Option<&ProviderSpec> {
        self.providers.get(id)
    }

    /// All providers, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = &ProviderSpec> + '_ {
        self.providers.values()
    }

    /// How many providers are loaded.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// No provider is loaded.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// The providers shipped with hangar (`providers/*.toml` in the repository, compiled in).
/// A deployment adds or overrides providers with a providers directory (see [`load_dir`]).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "claude_code.toml",
        include_str!("../../../providers/claude_code.toml"),
    ),
    ("codex.toml", include_str!("../../../providers/codex.toml")),
    (
        "gemini_cli.toml",
        include_str!("../../../providers/gemini_cli.toml"),
    ),
];

/// Parses and validates the [`BUILTIN`] providers.
pub fn builtin() -> Result<ProviderRegistry, ProviderError> {
    let mut providers = BTreeMap::new();
    for (name, text) in BUILTIN {
        let path = Path::new(name);
        let spec = load_str(path, text)?;
        providers.insert(spec.id.clone(), spec);
    }
    Ok(ProviderRegistry { providers })
}

impl ProviderRegistry {
    /// This registry with every provider of `other` added, replacing same-id ones.
    pub fn merged(mut self, other: ProviderRegistry) -> ProviderRegistry {
        self.providers.extend(other.providers);
        self
    }
}

/// Reads and validates every `*.toml` file in `dir` (not recursive; other files are ignored).
/// Each file's name must be its provider id. An empty directory gives an empty registry.
pub fn load_dir(dir: &Path) -> Result<ProviderRegistry, ProviderError> {
    let read_dir = |source| ProviderError::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut providers: BTreeMap<ProviderId, ProviderSpec> = BTreeMap::new();
    let mut origin: BTreeMap<ProviderId, PathBuf> = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|source| ProviderError::ReadFile {
            path: path.clone(),
            source,
        })?;
        let spec = load_str(&path, &text)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != spec.id.as_str() {
            return Err(invalid(
                &path,
                "id",
                "must equal the file name without .toml",
            ));
        }
        if let Some(first) = origin.get(&spec.id) {
            return Err(ProviderError::DuplicateId {
                id: spec.id.clone(),
                first: first.clone(),
                second: path,
            });
        }
        origin.insert(spec.id.clone(), path);
        providers.insert(spec.id.clone(), spec);
    }
    Ok(ProviderRegistry { providers })
}

/// Parses and validates one provider file's text; `path` names it in errors.
pub fn load_str(path: &Path, text: &str) -> Result<ProviderSpec, ProviderError> {
    let spec: ProviderSpec = toml::from_str(text).map_err(|source| ProviderError::Parse {
        path: path.to_owned(),
        source,
    })?;
    validate(path, &spec)?;
    Ok(spec)
}

fn invalid(path: &Path, field: impl Into<String>, problem: &'static str) -> ProviderError {
    ProviderError::Invalid {
        path: path.to_owned(),
        field: field.into(),
        problem,
    }
}

fn validate(path: &Path, spec: &ProviderSpec) -> Result<(), ProviderError> {
    let err = |field: String, problem| invalid(path, field, problem);
    if spec.display_name.trim().is_empty() {
        return Err(err("display_name".into(), "must not be empty"));
    }
    if !is_command_name(&spec.binary) {
        return Err(err(
            "binary".into(),
            "must be a plain executable name (no path, no spaces)",
        ));
    }
    if spec.offered_flows().next().is_none() {
        return Err(err("flows".into(), "at least one flow is required"));
    }
    for (flow, f) in spec.offered_flows() {
        validate_flow(flow, f)
            .map_err(|(field, problem)| err(format!("flows.{}.{field}", flow.as_str()), problem))?;
    }
    let mut seen = Vec::new();
    for (i, file) in spec.files.iter().enumerate() {
        let field = |name: &str| format!("files[{i}].{name}");
        check_rel_path(&file.path).map_err(|p| err(field("path"), p))?;
        if seen.contains(&file.path.as_str()) {
            return Err(err(field("path"), "listed twice"));
        }
        seen.push(&file.path);
        if file.mode > 0o777 {
            return Err(err(field("mode"), "must be at most 0o777"));
        }
        let pointers = [
            ("refresh_token", file.refresh_token.as_deref()),
            ("access_token", file.access_token.as_deref()),
            (
                "expiry.pointer",
                file.expiry.as_ref().map(|e| e.pointer.as_str()),
            ),
            (
                "id_token.pointer",
                file.id_token.as_ref().map(|t| t.pointer.as_str()),
            ),
            ("account", file.account.as_deref()),
        ];
        for (name, pointer) in pointers {
            let Some(pointer) = pointer else { continue };
            if file.format != FileFormat::Json {
                return Err(err(field(name), "pointers need format = \"json\""));
            }
            if !pointer.starts_with('/') {
                return Err(err(field(name), "must be a JSON pointer starting with /"));
            }
        }
    }
    for (i, file) in spec.extra_files.iter().enumerate() {
        let field = |name: &str| format!("extra_files[{i}].{name}");
        check_rel_path(&file.path).map_err(|p| err(field("path"), p))?;
        if seen.contains(&file.path.as_str()) {
            return Err(err(field("path"), "also listed as a credential file"));
        }
        seen.push(&file.path);
        if file.mode > 0o777 {
            return Err(err(field("mode"), "must be at most 0o777"));
        }
    }
    for name in spec.env.keys().chain(spec.unset_env.iter()) {
        if !is_env_name(name) {
            return Err(err(
                format!("env.{name}"),
                "not a valid environment variable name",
            ));
        }
    }
    if let Some(clash) = spec.unset_env.iter().find(|n| spec.env.contains_key(*n)) {
        return Err(err(format!("unset_env.{clash}"), "is also set in env"));
    }
    if let StatusSpec::Command { argv, .. } = &spec.status {
        if argv.is_empty() {
            return Err(err("status.argv".into(), "must not be empty"));
        }
    }
    let refresh_files = spec
        .files
        .iter()
        .filter(|f| f.refresh_token.is_some())
        .count();
    if let Some(refresh) = &spec.refresh {
        if refresh_files != 1 {
            return Err(err(
                "files".into(),
                "exactly one file must hold the refresh token when refresh is set",
            ));
        }
        // https only; plain http only to this machine's loopback (stand-in servers in tests).
        let loopback = [
            "http://127.0.0.1:",
            "http://127.0.0.1/",
            "http://localhost:",
        ]
        .iter()
        .any(|p| refresh.token_url.starts_with(p));
        if !refresh.token_url.starts_with("https://") && !loopback {
            return Err(err(
                "refresh.token_url".into(),
                "must be an https:// URL (http only on loopback)",
            ));
        }
        if refresh.client_id.trim().is_empty() {
            return Err(err("refresh.client_id".into(), "must not be empty"));
        }
        if let Some(name) = &refresh.endpoint_override_env {
            if !is_env_name(name) {
                return Err(err(
                    "refresh.endpoint_override_env".into(),
                    "not a valid environment variable name",
                ));
            }
        }
    } else if refresh_files > 1 {
        return Err(err(
            "files".into(),
            "at most one file may hold the refresh token",
        ));
    }
    Ok(())
}

fn validate_flow(flow: ConnectFlow, f: &FlowSpec) -> Result<(), (&'static str, &'static str)> {
    if f.argv.iter().any(|a| a.is_empty()) {
        return Err(("argv", "arguments must not be empty"));
    }
    if let Some(first) = f.argv.first() {
        if !is_command_name(first) {
            return Err(("argv", "must start with a plain executable name"));
        }
    }
    if f.env.keys().any(|k| !is_env_name(k)) {
        return Err(("env", "not a valid environment variable name"));
    }
    if let Some(name) = &f.token_env {
        if !is_env_name(name) {
            return Err(("token_env", "not a valid environment variable name"));
        }
    }
    if let Some(url) = &f.url_regex {
        if url.regex().captures_len() > 1 && !url.has_group("url") {
            return Err((
                "url_regex",
                "groups are allowed only with a named group `url`",
            ));
        }
    }
    if let Some(code) = &f.code_regex {
        if code.regex().captures_len() > 1 && !code.has_group("code") {
            return Err((
                "code_regex",
                "groups are allowed only with a named group `code`",
            ));
        }
    }
    let needs_argv = || {
        if f.argv.is_empty() {
            Err(("argv", "this flow needs a login command"))
        } else {
            Ok(())
        }
    };
    match flow {
        ConnectFlow::Browser => needs_argv()?,
        ConnectFlow::DeviceCode => {
            needs_argv()?;
            if f.url_regex.is_none() {
                return Err((
                    "url_regex",
                    "a device-code flow must find the verification URL",
                ));
            }
            if f.code_regex.is_none() {
                return Err(("code_regex", "a device-code flow must find the user code"));
            }
        }
        ConnectFlow::PasteCode => {
            needs_argv()?;
            if f.url_regex.is_none() {
                return Err((
                    "url_regex",
                    "a paste-code flow must find the authorization URL",
                ));
            }
            if f.input != Some(FlowInput::PasteCode) {
                return Err(("input", "a paste-code flow needs input = \"paste_code\""));
            }
        }
        ConnectFlow::Token => {
            let by_command = !f.argv.is_empty() && f.input == Some(FlowInput::TokenStdin);
            let by_env = f.argv.is_empty() && f.token_env.is_some();
            if !(by_command || by_env) {
                return Err((
                    "argv",
                    "a token flow needs argv with input = \"token_stdin\", or token_env alone",
                ));
            }
        }
    }
    if flow != ConnectFlow::Token && f.token_env.is_some() {
        return Err((
            "token_env",
            "only token flows carry a token in the environment",
        ));
    }
    if flow != ConnectFlow::PasteCode && f.input == Some(FlowInput::PasteCode) {
        return Err(("input", "paste_code input is for paste-code flows"));
    }
    Ok(())
}

/// A relative path made only of normal components: no `/` prefix, no `..`, no `.`.
fn check_rel_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("must not be empty");
    }
    if p.contains('\\') || p.contains('\0') {
        return Err("must not contain backslashes or NUL");
    }
    let path = Path::new(p);
    if path.is_absolute() {
        return Err("must be relative to HOME");
    }
    for c in path.components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Err("must not contain .."),
            _ => return Err("must contain only plain path components"),
        }
    }
    if p.split('/').any(|s| s.is_empty() || s == ".") {
        return Err("must contain only plain path components");
    }
    Ok(())
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_command_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !s.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        for ok in [".codex/auth.json", ".credentials.json", "a/b/c"] {
            assert_eq!(check_rel_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            ".codex/../../x",
            "./x",
            "a//b",
            "a/./b",
            "a\\b",
            "a/",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(is_env_name("CODEX_HOME"));
        assert!(is_env_name("_X1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name(""));
        assert!(is_command_name("codex"));
        assert!(is_command_name("gemini-cli"));
        assert!(!is_command_name("/usr/bin/codex"));
        assert!(!is_command_name("rm -rf"));
    }
}
