//! The shipped provider files load, say what the CLIs do, and the validation refuses broken ones.

use std::path::{Path, PathBuf};

use hangar_connect::{
    load_dir, load_str, ExpiryFormat, FlowInput, GrantFormat, ProviderError, StatusSpec,
};
use hangar_core::{ConnectFlow, ProviderId};

fn providers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../providers")
}

fn id(s: &str) -> ProviderId {
    ProviderId::new(s).expect("provider id")
}

#[test]
fn shipped_providers_load() {
    let reg = load_dir(&providers_dir()).expect("providers load");
    let ids: Vec<&str> = reg.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["claude_code", "codex", "gemini_cli"]);

    let claude = reg.get(&id("claude_code")).expect("claude");
    assert_eq!(claude.binary, "claude");
    let creds = claude.refresh_token_file().expect("refresh file");
    assert_eq!(creds.path, ".claude/.credentials.json");
    assert_eq!(creds.mode, 0o600);
    assert_eq!(
        creds.expiry.as_ref().map(|e| e.format),
        Some(ExpiryFormat::EpochMs)
    );
    let refresh = claude.refresh.as_ref().expect("claude refresh");
    assert_eq!(
        refresh.token_url,
        "https://platform.claude.com/v1/oauth/token"
    );
    assert_eq!(refresh.grant_format, GrantFormat::Json);
    assert!(
        matches!(&claude.status, StatusSpec::Command { argv, .. } if argv == &["claude", "auth", "status", "--json"])
    );
    assert_eq!(
        claude.flow(ConnectFlow::PasteCode).and_then(|f| f.input),
        Some(FlowInput::PasteCode)
    );

    let codex = reg.get(&id("codex")).expect("codex");
    assert_eq!(
        codex
            .flow(ConnectFlow::Browser)
            .and_then(|f| f.callback_port),
        Some(1455)
    );
    assert!(codex.flow(ConnectFlow::PasteCode).is_none());
    let refresh = codex.refresh.as_ref().expect("codex refresh");
    assert_eq!(refresh.client_id, "app_EMoamEEZ73f0CkXaXp7hrann");
    assert_eq!(
        refresh.endpoint_override_env.as_deref(),
        Some("CODEX_REFRESH_TOKEN_URL_OVERRIDE")
    );
    assert!(codex.extra_files[0]
        .contents
        .contains("cli_auth_credentials_store = \"file\""));

    let gemini = reg.get(&id("gemini_cli")).expect("gemini");
    assert_eq!(gemini.status, StatusSpec::FileOnly);
    assert!(gemini.flow(ConnectFlow::Browser).is_some_and(|f| f.pty));
    assert_eq!(
        gemini.refresh.as_ref().map(|r| r.grant_format),
        Some(GrantFormat::Form)
    );
    assert!(gemini
        .unset_env
        .iter()
        .any(|v| v == "GEMINI_FORCE_ENCRYPTED_FILE_STORAGE"));
}

/// What the CLIs print, as read from their shipped code, is recognised by the regexes.
#[test]
fn shipped_regexes_find_urls_and_codes() {
    let reg = load_dir(&providers_dir()).expect("providers load");

    // claude auth login: the URL inside an OSC 8 hyperlink, then the paste prompt.
    let claude = reg.get(&id("claude_code")).expect("claude");
    let url = "https://claude.com/cai/oauth/authorize?code=true&client_id=9d1c250a&state=xyz";
    let out = format!(
        "Opening browser to sign in\u{2026}\nIf the browser didn't open, visit:\n\x1b]8;;{url}\x07{url}\x1b]8;;\x07\nPaste code here if prompted > "
    );
    let flow = claude.flow(ConnectFlow::PasteCode).expect("paste");
    let re = flow.url_regex.as_ref().expect("url regex");
    assert_eq!(re.find(&out, "url"), Some(url));

    // codex login --device-auth.
    let codex = reg.get(&id("codex")).expect("codex");
    let flow = codex.flow(ConnectFlow::DeviceCode).expect("device");
    let out = "Follow these steps to sign in with ChatGPT using device code authorization:\n\n\
        1. Open this link in your browser and sign in to your account\n   \x1b[94mhttps://auth.openai.com/codex/device\x1b[0m\n\n\
        2. Enter this one-time code \x1b[90m(expires in 15 minutes)\x1b[0m\n   \x1b[94mABCD-12345\x1b[0m\n";
    let url_re = flow.url_regex.as_ref().expect("url regex");
    let code_re = flow.code_regex.as_ref().expect("code regex");
    assert_eq!(
        url_re.find(out, "url"),
        Some("https://auth.openai.com/codex/device")
    );
    assert_eq!(code_re.find(out, "code"), Some("ABCD-12345"));

    // gemini, NO_BROWSER=true.
    let gemini = reg.get(&id("gemini_cli")).expect("gemini");
    let flow = gemini.flow(ConnectFlow::PasteCode).expect("paste");
    let url = "https://accounts.google.com/o/oauth2/v2/auth?redirect_uri=https%3A%2F%2Fcodeassist.google.com%2Fauthcode&code_challenge=x";
    let out = format!(
        "Please visit the following URL to authorize the application:\r\n\r\n{url}\r\n\r\nEnter the authorization code: "
    );
    assert_eq!(
        flow.url_regex.as_ref().expect("re").find(&out, "url"),
        Some(url)
    );

    // The status answers.
    let StatusSpec::Command {
        logged_in_regex: Some(re),
        ..
    } = &claude.status
    else {
        panic!("claude has a status command with a regex");
    };
    assert!(re
        .regex()
        .is_match("{\n  \"loggedIn\": true,\n  \"authMethod\": \"claude.ai\"\n}"));
    assert!(!re.regex().is_match("{\n  \"loggedIn\": false\n}"));
}

const FOURTH: &str = r#"
id = "acme_cli"
display_name = "Acme CLI"
binary = "acme"
version = "1.0.0"

[flows.device_code]
argv = ["acme", "login", "--device"]
url_regex = '(?P<url>https://login\.acme\.example/device)'
code_regex = 'code: (?P<code>[A-Z]{4}-[A-Z]{4})'

[flows.token]
token_env = "ACME_API_KEY"

[[files]]
path = ".config/acme/tokens.json"
mode = 0o600
refresh_token = "/refresh"
access_token = "/access"
expiry = { pointer = "/expires_at", format = "rfc3339" }

[status]
kind = "command"
argv = ["acme", "whoami"]

[refresh]
token_url = "https://login.acme.example/token"
client_id = "acme-public"
grant_format = "form"
"#;

#[test]
fn a_fourth_provider_needs_no_rust_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(providers_dir()).expect("providers dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    std::fs::write(dir.path().join("acme_cli.toml"), FOURTH).expect("write");
    std::fs::write(dir.path().join("README.md"), "not a provider").expect("write");
    let reg = load_dir(dir.path()).expect("four providers load");
    assert_eq!(reg.len(), 4);
    let acme = reg.get(&id("acme_cli")).expect("acme");
    let flows: Vec<ConnectFlow> = acme.offered_flows().map(|(f, _)| f).collect();
    assert_eq!(flows, [ConnectFlow::DeviceCode, ConnectFlow::Token]);
    assert_eq!(
        acme.flow(ConnectFlow::DeviceCode)
            .and_then(|f| f.code_regex.as_ref())
            .and_then(|re| re.find("your code: WXYZ-ABCD", "code")),
        Some("WXYZ-ABCD")
    );
}

/// `FOURTH` with `from` replaced by `to`, loaded as `acme_cli.toml`.
fn load_edited(from: &str, to: &str) -> Result<hangar_connect::ProviderSpec, ProviderError> {
    assert!(FOURTH.contains(from), "test edit target {from:?} not found");
    load_str(Path::new("acme_cli.toml"), &FOURTH.replacen(from, to, 1))
}

fn invalid_field<T: std::fmt::Debug>(res: Result<T, ProviderError>) -> String {
    match res {
        Err(ProviderError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn broken_provider_files_are_refused() {
    assert!(load_edited("", "").is_ok());
    let cases = [
        (
            ".config/acme/tokens.json",
            "../acme/tokens.json",
            "files[0].path",
        ),
        (
            ".config/acme/tokens.json",
            "/etc/acme.json",
            "files[0].path",
        ),
        ("mode = 0o600", "mode = 0o4755", "files[0].mode"),
        ("refresh_token = \"/refresh\"", "", "files"),
        ("\"/access\"", "\"access\"", "files[0].access_token"),
        ("binary = \"acme\"", "binary = \"/usr/bin/acme\"", "binary"),
        (
            "code_regex = 'code: (?P<code>[A-Z]{4}-[A-Z]{4})'",
            "",
            "flows.device_code.code_regex",
        ),
        (
            "argv = [\"acme\", \"login\", \"--device\"]",
            "",
            "flows.device_code.argv",
        ),
        (
            "token_env = \"ACME_API_KEY\"",
            "token_env = \"ACME-KEY\"",
            "flows.token.token_env",
        ),
        ("argv = [\"acme\", \"whoami\"]", "argv = []", "status.argv"),
        (
            "https://login.acme.example/token",
            "http://login.acme.example/token",
            "refresh.token_url",
        ),
    ];
    for (from, to, field) in cases {
        assert_eq!(
            invalid_field(load_edited(from, to)),
            field,
            "{from} -> {to}"
        );
    }

    // No flow at all.
    let no_flows = "id = \"acme_cli\"\ndisplay_name = \"Acme\"\nbinary = \"acme\"\n[flows]\n[status]\nkind = \"file_only\"\n";
    assert_eq!(
        invalid_field(load_str(Path::new("acme_cli.toml"), no_flows)),
        "flows"
    );

    // Two refresh-token files.
    let two = format!("{FOURTH}\n[[files]]\npath = \"other.json\"\nrefresh_token = \"/r\"\n");
    assert_eq!(
        invalid_field(load_str(Path::new("acme_cli.toml"), &two)),
        "files"
    );

    // Schema errors: a regex that does not compile, an unknown field, a bad id.
    for (from, to) in [
        ("code: (?P<code>", "code: ((?P<code>"),
        ("version = \"1.0.0\"", "versoin = \"1.0.0\""),
        ("id = \"acme_cli\"", "id = \"Acme\""),
        ("format = \"rfc3339\"", "format = \"fortnights\""),
    ] {
        assert!(
            matches!(load_edited(from, to), Err(ProviderError::Parse { .. })),
            "{from} -> {to}"
        );
    }
    let err = load_edited("code: (?P<code>", "code: ((?P<code>").expect_err("bad regex");
    let source = std::error::Error::source(&err).expect("source").to_string();
    assert!(source.contains("invalid regex"), "{source}");
}

#[test]
fn directory_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The file name must be the id.
    std::fs::write(dir.path().join("acme.toml"), FOURTH).expect("write");
    assert_eq!(invalid_field(load_dir(dir.path())), "id");
    std::fs::remove_file(dir.path().join("acme.toml")).expect("rm");
    assert!(load_dir(dir.path()).expect("empty dir").is_empty());
    assert!(matches!(
        load_dir(&dir.path().join("missing")),
        Err(ProviderError::ReadDir { .. })
    ));
}
