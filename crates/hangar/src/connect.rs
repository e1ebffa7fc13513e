//! `hangar connect` and `hangar credentials`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use hangar_core::{ConnectFlow, ConnectPrompt, ConnectState, CredentialStatus};
use hangar_server::api::dto::{ConnectSessionView, StartConnectRequest, SubmitCodeRequest};
use reqwest::Method;

use crate::cli::{ConnectArgs, CredentialsCommand, OutputFormat};
use crate::client::ApiClient;
use crate::output::emit;

/// Longest a `hangar connect` waits for the person (the server's sign-in deadline ends the
/// session first; this only bounds the client).
const CONNECT_WAIT: Duration = Duration::from_secs(16 * 60);

/// `hangar connect PROVIDER` / `hangar connect status`.
pub async fn connect(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(&args.client)?;
    if args.provider == "status" {
        return status(&api, args.client.output).await;
    }
    let flow = match args.flow.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<ConnectFlow>()
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    };
    let mut session: ConnectSessionView = api
        .post(
            "/api/v1/connect",
            &StartConnectRequest {
                provider: args.provider.clone(),
                flow,
            },
        )
        .await?;
    if args.no_wait {
        emit(args.client.output, &session, &[], Vec::new())?;
        return Ok(ExitCode::SUCCESS);
    }
    let viewer_url = session.viewer_url.clone();
    let path = format!("/api/v1/connect/{}", session.id);
    let deadline = Instant::now() + CONNECT_WAIT;
    let mut shown = false;
    let mut sent_code = false;
    while !session.state.is_terminal() {
        if !shown && session.state == ConnectState::AwaitingUser {
            shown = true;
            show_prompt(&api, &session, viewer_url.as_deref());
        }
        let needs_input = matches!(session.prompt, Some(ConnectPrompt::AuthorizeUrl { .. }))
            || session.flow == ConnectFlow::Token;
        if shown && !sent_code && needs_input {
            sent_code = true;
            let code = if session.flow == ConnectFlow::Token
                && std::io::IsTerminal::is_terminal(&std::io::stdin())
            {
                // A token or API key is a secret: not echoed to the terminal (a script pipes
                // it to standard input instead).
                rpassword::prompt_password("Paste the token or API key (not shown): ")?
                    .trim()
                    .to_owned()
            } else {
                read_line("Paste the code here: ")?
            };
            let _: () = api
                .call(
                    Method::POST,
                    &format!("{path}/code"),
                    Some(&SubmitCodeRequest { code }),
                    Duration::ZERO,
                )
                .await?;
        }
        if Instant::now() > deadline {
            bail!(
                "connect session {} still {} after {CONNECT_WAIT:?}",
                session.id,
                session.state
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        session = api.get(&path).await?;
    }
    match args.client.output {
        OutputFormat::Json => emit(args.client.output, &session, &[], Vec::new())?,
        OutputFormat::Table => match session.state {
            ConnectState::Completed => {
                println!(
                    "{} connected; delivered to your running sandboxes.",
                    session.provider
                )
            }
            state => println!(
                "{} not connected: {state}{}",
                session.provider,
                session
                    .failure
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default()
            ),
        },
    }
    Ok(if session.state == ConnectState::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn show_prompt(api: &ApiClient, session: &ConnectSessionView, viewer_url: Option<&str>) {
    match &session.prompt {
        Some(ConnectPrompt::VerificationUri { uri, user_code }) => {
            eprintln!("Open {uri} and enter the code {user_code}");
        }
        Some(ConnectPrompt::AuthorizeUrl { url }) => {
            eprintln!("Open this address, sign in, and paste the code you get back:\n  {url}");
        }
        Some(ConnectPrompt::Viewer) => {
            // The viewer token (good for this session only) rides in the fragment, which the
            // browser never sends to a server.
            if let Some(url) = viewer_url {
                eprintln!(
                    "The sign-in page is open in a remote browser. Open it here and sign in:\n  {}{url}",
                    api.base()
                );
            }
        }
        None => {}
    }
    eprintln!(
        "Waiting for the sign-in (session {}, until {})...",
        session.id,
        session.expires_at.to_rfc3339()
    );
}

fn read_line(prompt: &str) -> anyhow::Result<String> {
    use std::io::Write;
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

async fn status(api: &ApiClient, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let list: Vec<CredentialStatus> = api.get("/api/v1/credentials").await?;
    let rows = list
        .iter()
        .map(|c| {
            vec![
                c.provider.to_string(),
                c.connected_since.to_rfc3339(),
                match (c.last_check_ok, &c.last_check_output) {
                    (Some(true), Some(out)) => format!("ok: {}", first_line(out)),
                    (Some(false), Some(out)) => format!("FAILED: {}", first_line(out)),
                    _ => "not yet".into(),
                },
                c.access_token_expires_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
                c.last_refresh_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    emit(
        format,
        &list,
        &[
            "PROVIDER",
            "CONNECTED",
            "LAST CHECK",
            "TOKEN EXPIRES",
            "LAST REFRESH",
        ],
        rows,
    )?;
    Ok(ExitCode::SUCCESS)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").chars().take(60).collect()
}

/// `hangar credentials ...`.
pub async fn credentials(cmd: CredentialsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CredentialsCommand::Ls { client } => {
            let api = ApiClient::new(&client)?;
            status(&api, client.output).await
        }
        CredentialsCommand::Rm { client, provider } => {
            let api = ApiClient::new(&client)?;
            let () = api
                .call::<(), ()>(
                    Method::DELETE,
                    &format!("/api/v1/credentials/{provider}"),
                    None,
                    Duration::ZERO,
                )
                .await?;
            if client.output == OutputFormat::Table {
                println!("removed {provider}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
