//! One connect session's task: browser sandbox, login command, prompt, capture, completion.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hangar_connect::ProviderSpec;
use hangar_core::{
    ConnectFlow, ConnectPrompt, ConnectSession, ConnectState, SandboxId, SandboxState,
};
use hangar_guest::protocol::{
    Event, ExecRequest, Input, PtyRequest, PutFileRequest, WatchRequest, WatchedFile,
};
use hangar_identity::Principal;
use hangar_store::{ConnectChange, NewCredential};
use tokio::sync::mpsc;

use super::ConnectService;
use crate::credentials::{CredentialFile, CredentialFiles};
use crate::sandboxes::CreateSandbox;

/// Most terminal output kept to look for the provider's URL and code, in bytes.
const TRANSCRIPT_MAX: usize = 64 * 1024;
/// Most bytes of one credential file.
const MAX_CREDENTIAL_FILE: u64 = 1024 * 1024;
/// After the login command exits, how long to wait for its files before giving up.
const AFTER_EXIT_GRACE: Duration = Duration::from_secs(3);
/// Deadline of a login command that reads a token from standard input, in milliseconds.
const LOGIN_COMMAND_TIMEOUT_MS: u64 = 60_000;
/// Terminal size for login commands (wide, so long URLs are not wrapped).
const LOGIN_ROWS: u16 = 50;
const LOGIN_COLS: u16 = 400;

impl ConnectService {
    /// Drives `session` to a terminal state within its sign-in deadline, then cleans up and,
    /// on success, delivers and checks.
    pub(super) async fn run(
        self: Arc<Self>,
        owner: Principal,
        session: ConnectSession,
        spec: ProviderSpec,
        input: mpsc::Receiver<Vec<u8>>,
    ) {
        let id = session.id;
        let left_ms = session.expires_at.unix_ms() - self.clock.now().unix_ms();
        let deadline = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
        let outcome =
            tokio::time::timeout(deadline, self.drive(&owner, &session, &spec, input)).await;
        let current = match self.store.connect_sessions().get(id).await {
            Ok(Some(s)) => s,
            _ => return,
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => self.end(&current, ConnectState::Failed, Some(reason)).await,
            Err(_) => self.end(&current, ConnectState::Expired, None).await,
        }
        let current = match self.store.connect_sessions().get(id).await {
            Ok(Some(s)) => s,
            _ => return,
        };
        self.finish(&owner, &current).await;
        if current.state == ConnectState::Completed {
            let delivered = self.deliver_all(owner.user, Some(&spec)).await;
            self.check_status(owner.user, &spec, &delivered).await;
        }
    }

    /// Moves an open session to a terminal state (compare-and-set; a session that reached a
    /// terminal state meanwhile is left alone).
    async fn end(&self, session: &ConnectSession, to: ConnectState, failure: Option<String>) {
        if session.state.is_terminal() {
            return;
        }
        let change = ConnectChange {
            failure,
            ..ConnectChange::default()
        };
        match self
            .store
            .connect_sessions()
            .transition(session.id, session.state, to, change, self.clock.now())
            .await
        {
            Ok(ended) => self.ended(&ended).await,
            Err(e) => {
                tracing::debug!(session = %session.id, error = %e, "connect outcome not recorded")
            }
        }
    }

    async fn advance(
        &self,
        session: &ConnectSession,
        from: ConnectState,
        to: ConnectState,
        change: ConnectChange,
    ) -> Result<(), String> {
        self.store
            .connect_sessions()
            .transition(session.id, from, to, change, self.clock.now())
            .await
            .map(|_| ())
            .map_err(|e| format!("session could not move to {to}: {e}"))
    }

    /// Everything up to `completed`; an `Err` is the failure reason shown to the person.
    async fn drive(
        &self,
        owner: &Principal,
        session: &ConnectSession,
        spec: &ProviderSpec,
        mut input: mpsc::Receiver<Vec<u8>>,
    ) -> Result<(), String> {
        let flow = session.flow;
        let flow_spec = spec
            .flow(flow)
            .ok_or_else(|| format!("provider offers no {flow} flow"))?;

        // 0. A token the CLI reads from an environment variable needs no sandbox and no
        //    command: the person gives it, hangar seals it as the provider's env file.
        if let Some(var) = &flow_spec.token_env {
            self.await_user(session, None).await?;
            let token = input
                .recv()
                .await
                .ok_or("the session closed before a token was given")?;
            let file = env_credential_file(spec, var, &token)?;
            return self
                .seal_and_complete(
                    owner,
                    session,
                    spec,
                    CredentialFiles { files: vec![file] },
                    None,
                )
                .await;
        }

        // 1. The browser sandbox, recorded on the session as soon as it exists.
        let sandbox = self
            .sandboxes
            .create(
                owner,
                CreateSandbox {
                    image: self.config.browser_image.clone(),
                    ..CreateSandbox::default()
                },
            )
            .await
            .map_err(|e| format!("browser sandbox: {e}"))?;
        self.set_browser_sandbox(session, sandbox.id).await?;
        self.wait_running(owner, sandbox.id).await?;
        let guest = self.sandboxes.node().guest(sandbox.id);

        // 1b. The provider's extra files (settings that select file storage or the login
        //     method) are in place before the login, as they will be where the CLI runs.
        let home = self
            .sandboxes
            .user_home(&sandbox)
            .ok_or("the browser sandbox's image is gone")?;
        for extra in &spec.extra_files {
            guest
                .put_file(
                    PutFileRequest {
                        path: format!("{}/{}", home.trim_end_matches('/'), extra.path),
                        mode: extra.mode,
                        data: extra.contents.clone().into_bytes(),
                    },
                    self.config.delivery_timeout,
                )
                .await
                .map_err(|e| format!("writing {}: {e}", extra.path))?;
        }

        // 2. Watch for the credential files before the login can write them.
        let required: Vec<&str> = spec
            .files
            .iter()
            .filter(|f| f.required)
            .map(|f| f.path.as_str())
            .collect();
        let mut watch = guest
            .watch(WatchRequest {
                paths: required.iter().map(|p| (*p).to_owned()).collect(),
                settle_ms: u64::try_from(self.config.settle.as_millis()).unwrap_or(300),
                timeout_ms: u64::try_from(self.config.sign_in_timeout.as_millis())
                    .unwrap_or(u64::MAX),
                max_bytes: MAX_CREDENTIAL_FILE,
            })
            .await
            .map_err(|e| format!("watching the credential files: {e}"))?;
        let resolved = watch.paths().to_vec();

        // 3a. A token or API key read from standard input: the CLI refuses a terminal there,
        //     so it runs as a plain command once the person has given the token.
        if flow_spec.input == Some(hangar_connect::FlowInput::TokenStdin) {
            self.await_user(session, None).await?;
            let token = input
                .recv()
                .await
                .ok_or("the session closed before a token was given")?;
            let mut env: Vec<(String, String)> = spec
                .env
                .iter()
                .chain(flow_spec.env.iter())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            env.sort();
            let out = guest
                .exec_collect(
                    ExecRequest {
                        argv: flow_spec.argv.clone(),
                        env,
                        cwd: None,
                        timeout_ms: Some(LOGIN_COMMAND_TIMEOUT_MS),
                        stdin: Some(token),
                    },
                    Duration::from_millis(LOGIN_COMMAND_TIMEOUT_MS + 5_000),
                )
                .await
                .map_err(|e| format!("running the login command: {e}"))?;
            if out.status.code != Some(0) {
                // Its error output, not its input: the token never reaches a message.
                let tail: String = String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect();
                return Err(format!(
                    "the login command exited with {:?}: {tail}",
                    out.status.code
                ));
            }
            return match watch.next_files(AFTER_EXIT_GRACE).await {
                Ok(Some(files)) => {
                    self.capture(owner, session, spec, &required, &resolved, files, &guest)
                        .await
                }
                _ => Err("the login command wrote no credential files".into()),
            };
        }

        // 3. The provider's login command, in a terminal (some CLIs only log in from a TTY,
        //    and paste codes go to its input).
        let mut argv = Vec::new();
        if flow == ConnectFlow::Browser {
            argv.extend(self.config.browser_session.iter().cloned());
        }
        argv.extend(flow_spec.argv.iter().cloned());
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .chain(flow_spec.env.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.sort();
        let (mut writer, mut reader) = guest
            .pty(PtyRequest {
                argv,
                env,
                cwd: None,
                rows: LOGIN_ROWS,
                cols: LOGIN_COLS,
            })
            .await
            .map_err(|e| format!("starting the login command: {e}"))?;

        // The browser flow and the token flow need nothing from the output to prompt.
        let mut prompted = false;
        let immediate = match flow {
            ConnectFlow::Browser => Some(Some(ConnectPrompt::Viewer)),
            ConnectFlow::Token => Some(None),
            _ => None,
        };
        if let Some(prompt) = immediate {
            self.await_user(session, prompt).await?;
            prompted = true;
        }

        let mut transcript = String::new();
        let mut exited: Option<String> = None;
        loop {
            let wait = if exited.is_some() {
                AFTER_EXIT_GRACE
            } else {
                self.config.sign_in_timeout
            };
            tokio::select! {
                files = watch.next_files(wait) => match files {
                    Ok(Some(files)) => {
                        return self.capture(owner, session, spec, &required, &resolved, files, &guest).await;
                    }
                    Ok(None) => return Err("the sign-in deadline passed".into()),
                    Err(e) => {
                        return Err(match exited {
                            Some(how) => format!("the login command {how} without writing its credential files"),
                            None => format!("watching the credential files: {e}"),
                        });
                    }
                },
                event = reader.next_event(), if exited.is_none() => match event {
                    Ok(Some(Event::Stdout(data) | Event::Stderr(data))) => {
                        if transcript.len() < TRANSCRIPT_MAX {
                            transcript.push_str(&String::from_utf8_lossy(&data));
                        }
                        if !prompted {
                            if let Some(prompt) = find_prompt(flow, flow_spec, &transcript) {
                                self.await_user(session, Some(prompt)).await?;
                                prompted = true;
                            }
                        }
                    }
                    Ok(Some(Event::Exit(status))) => {
                        exited = Some(match status.code {
                            Some(code) => format!("exited with {code}"),
                            None => format!("was killed by signal {}", status.signal.unwrap_or(0)),
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => exited = Some("ended".to_owned()),
                },
                text = input.recv(), if exited.is_none() => {
                    let Some(text) = text else { continue };
                    writer
                        .send(Input::Stdin(text))
                        .await
                        .map_err(|e| format!("passing the code to the login command: {e}"))?;
                }
            }
        }
    }

    async fn set_browser_sandbox(
        &self,
        session: &ConnectSession,
        sandbox: SandboxId,
    ) -> Result<(), String> {
        // The sandbox is recorded with the move to `awaiting_user`; until then it is kept here
        // so cleanup can find it.
        self.browser
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(session.id, sandbox);
        Ok(())
    }

    async fn wait_running(&self, owner: &Principal, sandbox: SandboxId) -> Result<(), String> {
        loop {
            let sb = self
                .sandboxes
                .get(owner, sandbox)
                .await
                .map_err(|e| format!("browser sandbox: {e}"))?;
            match sb.state {
                SandboxState::Running => return Ok(()),
                s if s.is_booting() => tokio::time::sleep(Duration::from_millis(20)).await,
                s => {
                    let why = sb.failure.map(|f| f.message).unwrap_or_default();
                    return Err(format!("browser sandbox is {s}: {why}"));
                }
            }
        }
    }

    async fn await_user(
        &self,
        session: &ConnectSession,
        prompt: Option<ConnectPrompt>,
    ) -> Result<(), String> {
        let sandbox = self
            .browser
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session.id)
            .copied();
        self.advance(
            session,
            ConnectState::Starting,
            ConnectState::AwaitingUser,
            ConnectChange {
                browser_sandbox: sandbox,
                prompt,
                failure: None,
            },
        )
        .await
    }

    /// Takes the files: checks them against the provider, seals them, and completes the
    /// session in the same store transaction as it stores them.
    #[allow(clippy::too_many_arguments)]
    async fn capture(
        &self,
        owner: &Principal,
        session: &ConnectSession,
        spec: &ProviderSpec,
        required: &[&str],
        resolved: &[String],
        files: Vec<WatchedFile>,
        guest: &hangar_guest::client::GuestClient,
    ) -> Result<(), String> {
        let mut by_path: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
        for (file, rel) in files.into_iter().zip(required.iter()) {
            by_path.insert((*rel).to_owned(), (file.mode & 0o777, file.data));
        }
        // Optional files (account details) are taken if present.
        let home = resolved
            .first()
            .zip(required.first())
            .and_then(|(abs, rel)| abs.strip_suffix(rel))
            .unwrap_or("/")
            .to_owned();
        for optional in spec.files.iter().filter(|f| !f.required) {
            let path = format!("{}{}", home, optional.path);
            if let Ok((data, mode)) = guest.get_file(&path, Duration::from_secs(5)).await {
                by_path.insert(optional.path.clone(), (mode & 0o777, data));
            }
        }
        let contents: BTreeMap<String, Vec<u8>> = by_path
            .iter()
            .map(|(p, (_, d))| (p.clone(), d.clone()))
            .collect();
        let summary = hangar_connect::credential::inspect(spec, session.flow, &contents)
            .map_err(|e| format!("the credential files were refused: {e}"))?;
        let files = CredentialFiles {
            files: spec
                .files
                .iter()
                .filter_map(|f| {
                    by_path.get(&f.path).map(|(_, data)| CredentialFile {
                        path: f.path.clone(),
                        mode: f.mode,
                        data: data.clone(),
                    })
                })
                .collect(),
        };
        self.seal_and_complete(owner, session, spec, files, summary.access_token_expires_at)
            .await
    }

    /// Seals `files` as the owner's credential for `spec` and completes the session in the
    /// same store transaction (compare-and-set from `capturing`; a session that is no longer
    /// open takes nothing).
    async fn seal_and_complete(
        &self,
        owner: &Principal,
        session: &ConnectSession,
        spec: &ProviderSpec,
        files: CredentialFiles,
        access_token_expires_at: Option<hangar_core::Timestamp>,
    ) -> Result<(), String> {
        let current = self
            .store
            .connect_sessions()
            .get(session.id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("session vanished")?;
        if !current.state.accepts_credentials() {
            return Err(format!(
                "session is {} and takes no credentials",
                current.state
            ));
        }
        self.advance(
            session,
            current.state,
            ConnectState::Capturing,
            ConnectChange::default(),
        )
        .await?;
        let previous = self
            .store
            .credentials()
            .get(owner.user, &spec.id)
            .await
            .map_err(|e| e.to_string())?
            .map(|r| r.record_version);
        let version = previous.map_or(1, |v| v + 1);
        let sealed = self
            .vault
            .seal(owner.user, &spec.id, version, &files)
            .map_err(|e| format!("sealing: {e}"))?;
        let completed = self
            .store
            .complete_connect(
                session.id,
                ConnectState::Capturing,
                NewCredential {
                    owner: owner.user,
                    provider: spec.id.clone(),
                    record_version: version,
                    sealed: sealed.to_bytes(),
                    kek_version: sealed.kek_version,
                    access_token_expires_at,
                },
                previous,
                self.clock.now(),
            )
            .await
            .map_err(|e| format!("storing the credential: {e}"))?;
        self.ended(&completed.0).await;
        Ok(())
    }
}

/// Longest token accepted for an environment-variable credential, in bytes.
const MAX_ENV_TOKEN: usize = 4096;

/// Where a provider's environment-variable credential is delivered, relative to the sandbox
/// user's home: `.hangar/env/<provider>.env`, which the guest agent reads for every command
/// ([`hangar_guest::protocol::CREDENTIAL_ENV_DIR`]).
pub(super) fn env_file_path(spec: &ProviderSpec) -> String {
    format!(
        "{}/{}.env",
        hangar_guest::protocol::CREDENTIAL_ENV_DIR,
        spec.id
    )
}

/// The env file carrying `token` as `var` (`VAR=token` and a newline, mode 0600). The token is
/// trimmed; it must then be one line of visible ASCII, at most [`MAX_ENV_TOKEN`] bytes.
/// The error names the rule, never the token.
fn env_credential_file(
    spec: &ProviderSpec,
    var: &str,
    token: &[u8],
) -> Result<CredentialFile, String> {
    let token = std::str::from_utf8(token)
        .map(str::trim)
        .map_err(|_| "the token is not text".to_owned())?;
    if token.is_empty()
        || token.len() > MAX_ENV_TOKEN
        || !token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "the token must be one line of visible ASCII, 1 to {MAX_ENV_TOKEN} bytes"
        ));
    }
    Ok(CredentialFile {
        path: env_file_path(spec),
        mode: 0o600,
        data: format!("{var}={token}\n").into_bytes(),
    })
}

/// The person's prompt, once the login command's output shows it.
fn find_prompt(
    flow: ConnectFlow,
    spec: &hangar_connect::FlowSpec,
    transcript: &str,
) -> Option<ConnectPrompt> {
    let url = spec
        .url_regex
        .as_ref()
        .and_then(|p| p.find(transcript, "url"))
        .map(str::to_owned);
    match flow {
        ConnectFlow::DeviceCode => {
            let code = spec
                .code_regex
                .as_ref()
                .and_then(|p| p.find(transcript, "code"))?;
            Some(ConnectPrompt::VerificationUri {
                uri: url?,
                user_code: code.to_owned(),
            })
        }
        ConnectFlow::PasteCode => Some(ConnectPrompt::AuthorizeUrl { url: url? }),
        ConnectFlow::Browser => Some(ConnectPrompt::Viewer),
        ConnectFlow::Token => None,
    }
}
