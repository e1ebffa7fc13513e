//! The client verbs: each parses its flags, makes API calls, prints a table or JSON.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hangar_core::{RetentionPolicy, SandboxState};
use hangar_server::api::dto::{
    CreateSandboxRequest, CreateTokenRequest, CreateUserRequest, CreatedToken, CreatedUser,
    ExecRequestBody, ExecResult, ImageView, LimitsRequest, SandboxView, TokenView, UserView,
};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;

use crate::cli::{
    ImageCommand, OutputFormat, SandboxCommand, TokenCommand, UserCommand, VaultCommand,
};
use crate::client::ApiClient;
use crate::output::emit;

/// How long `--wait` style commands wait for a state before giving up.
const WAIT_DEADLINE: Duration = Duration::from_secs(120);

fn sandbox_row(s: &SandboxView) -> Vec<String> {
    vec![
        s.id.to_string(),
        s.state.to_string(),
        s.image.clone(),
        format!(
            "{}m cpu / {} MiB / {} pids",
            s.limits.cpu_millis, s.limits.memory_mib, s.limits.pids_max
        ),
        s.created_at.to_rfc3339(),
    ]
}

const SANDBOX_HEADERS: [&str; 5] = ["ID", "STATE", "IMAGE", "LIMITS", "CREATED"];

fn print_sandbox(format: OutputFormat, s: &SandboxView) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        return emit(format, s, &[], Vec::new());
    }
    println!("id:        {}", s.id);
    println!("state:     {}", s.state);
    println!("image:     {} ({})", s.image, s.image_digest);
    println!("driver:    {}", s.driver.as_str());
    match s.address {
        Some(addr) => println!("network:   {} ({addr})", s.network),
        None => println!("network:   {}", s.network),
    }
    println!(
        "limits:    {} millicores, {} MiB, {} pids",
        s.limits.cpu_millis, s.limits.memory_mib, s.limits.pids_max
    );
    println!("created:   {}", s.created_at.to_rfc3339());
    println!("boot:");
    let start = s.boot.first().map(|e| e.at.unix_ms()).unwrap_or(0);
    for e in &s.boot {
        println!(
            "  {:<16} {}  (+{} ms)",
            e.stage.as_str(),
            e.at.to_rfc3339(),
            e.at.unix_ms() - start
        );
    }
    if let Some(f) = &s.failure {
        println!("failure:   {:?}: {}", f.kind, f.message);
        if let Some(stage) = f.stage_reached {
            println!("  stage reached: {stage}");
        }
        if !f.console_tail.is_empty() {
            println!("  console (last lines):");
            for line in &f.console_tail {
                println!("    {line}");
            }
        }
    }
    Ok(())
}

/// Polls the sandbox until `done(state)` or the deadline, with a spinner on a terminal.
async fn wait_for(
    api: &ApiClient,
    id: &str,
    what: &str,
    done: impl Fn(SandboxState) -> bool,
) -> anyhow::Result<SandboxView> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(Duration::from_millis(100));
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        let s: SandboxView = api.get(&format!("/api/v1/sandboxes/{id}")).await?;
        spinner.set_message(format!("{what}: {}", s.state));
        if done(s.state) {
            spinner.finish_and_clear();
            return Ok(s);
        }
        if Instant::now() > deadline {
            spinner.finish_and_clear();
            bail!("sandbox {id} still {} after {:?}", s.state, WAIT_DEADLINE);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `hangar sandbox ...`.
pub async fn sandbox(cmd: SandboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SandboxCommand::Create {
            client,
            image,
            cpu_millis,
            memory_mib,
            pids_max,
            readiness_timeout_ms,
            keep_failed_s,
            network,
            wait,
        } => {
            let api = ApiClient::new(&client)?;
            let limits = (cpu_millis.is_some() || memory_mib.is_some() || pids_max.is_some())
                .then_some(LimitsRequest {
                    cpu_millis,
                    memory_mib,
                    pids_max,
                });
            let req = CreateSandboxRequest {
                image: Some(image),
                limits,
                readiness_timeout_ms,
                retention: keep_failed_s.map(|ttl_s| RetentionPolicy::Keep { ttl_s }),
                network: network.map(Into::into),
            };
            let mut s: SandboxView = api.post("/api/v1/sandboxes", &req).await?;
            if wait {
                s = wait_for(&api, &s.id.to_string(), "booting", |st| !st.is_booting()).await?;
            }
            match client.output {
                OutputFormat::Json => emit(client.output, &s, &[], Vec::new())?,
                OutputFormat::Table if wait => print_sandbox(client.output, &s)?,
                OutputFormat::Table => println!("{}\t{}", s.id, s.state),
            }
            Ok(if s.state == SandboxState::Failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        SandboxCommand::Ls { client, all } => {
            let api = ApiClient::new(&client)?;
            let list: Vec<SandboxView> = api.get(&format!("/api/v1/sandboxes?all={all}")).await?;
            let rows = list.iter().map(sandbox_row).collect();
            emit(client.output, &list, &SANDBOX_HEADERS, rows)?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Get { client, id } => {
            let api = ApiClient::new(&client)?;
            let s: SandboxView = api.get(&format!("/api/v1/sandboxes/{id}")).await?;
            print_sandbox(client.output, &s)?;
            Ok(ExitCode::SUCCESS)
        }
        SandboxCommand::Exec {
            client,
            timeout_ms,
            cwd,
            env,
            id,
            argv,
        } => {
            let api = ApiClient::new(&client)?;
            let env = parse_env(&env)?;
            let body = ExecRequestBody {
                argv,
                env,
                cwd,
                timeout_ms,
                stdin: None,
            };
            let extra = Duration::from_millis(timeout_ms.unwrap_or(60_000));
            let out: ExecResult = api
                .call(
                    Method::POST,
                    &format!("/api/v1/sandboxes/{id}/exec"),
                    Some(&body),
                    extra,
                )
                .await?;
            if client.output == OutputFormat::Json {
                emit(client.output, &out, &[], Vec::new())?;
            } else {
                use std::io::Write;
                std::io::stdout().write_all(out.stdout.as_bytes())?;
                std::io::stderr().write_all(out.stderr.as_bytes())?;
                if out.timed_out {
                    eprintln!("hangar: command killed at its deadline");
                }
            }
            let code = match (out.exit_code, out.signal) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                (None, None) => 1,
            };
            Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
        }
        SandboxCommand::Shell { client, id, argv } => {
            let api = ApiClient::new(&client)?;
            let code = crate::shell::run(&api, &id, &argv).await?;
            Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
        }
        SandboxCommand::Stop {
            client,
            id,
            no_wait,
        } => {
            lifecycle(&client, &id, "stop", no_wait, |s| {
                s != SandboxState::Stopping
            })
            .await
        }
        SandboxCommand::Start {
            client,
            id,
            no_wait,
        } => lifecycle(&client, &id, "start", no_wait, |s| !s.is_booting()).await,
        SandboxCommand::Rm {
            client,
            id,
            no_wait,
        } => {
            let api = ApiClient::new(&client)?;
            let s: SandboxView = api
                .call::<(), _>(
                    Method::DELETE,
                    &format!("/api/v1/sandboxes/{id}"),
                    None,
                    Duration::ZERO,
                )
                .await?;
            let s = if no_wait {
                s
            } else {
                wait_for(&api, &id, "removing", |st| st == SandboxState::Destroyed).await?
            };
            finish(&client.output, &s)
        }
    }
}

async fn lifecycle(
    client: &crate::cli::ClientOpts,
    id: &str,
    verb: &str,
    no_wait: bool,
    done: impl Fn(SandboxState) -> bool,
) -> anyhow::Result<ExitCode> {
    let api = ApiClient::new(client)?;
    let s: SandboxView = api
        .post(
            &format!("/api/v1/sandboxes/{id}/{verb}"),
            &serde_json::json!({}),
        )
        .await?;
    let s = if no_wait {
        s
    } else {
        wait_for(&api, id, verb, done).await?
    };
    finish(&client.output, &s)
}

fn finish(format: &OutputFormat, s: &SandboxView) -> anyhow::Result<ExitCode> {
    match format {
        OutputFormat::Json => emit(*format, s, &[], Vec::new())?,
        OutputFormat::Table => println!("{}\t{}", s.id, s.state),
    }
    Ok(if s.state == SandboxState::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("--env {p:?} is not KEY=VALUE"))
        })
        .collect()
}

/// `hangar image ...`.
pub async fn image(cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ImageCommand::Build { data, recipe } => {
            crate::commands_image::build(data, &recipe).await?;
            Ok(ExitCode::SUCCESS)
        }
        ImageCommand::Ls { client } => {
            let api = ApiClient::new(&client)?;
            let images: Vec<ImageView> = api.get("/api/v1/images").await?;
            let rows = images
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.digest.chars().take(19).collect(),
                        format!("{} MiB", i.size_bytes / (1024 * 1024)),
                        i.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                })
                .collect();
            emit(
                client.output,
                &images,
                &["NAME", "DIGEST", "SIZE", "LABELS"],
                rows,
            )?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `hangar token ...`.
pub async fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create {
            client,
            name,
            expires_in_s,
            expires_in,
            scope,
        } => {
            let api = ApiClient::new(&client)?;
            let scope = scope
                .map(|s| hangar_identity::ScopeSet::parse_list(&s).map(|s| s.to_string()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--scope: {}", e.description))?;
            let t: CreatedToken = api
                .post(
                    "/api/v1/tokens",
                    &CreateTokenRequest {
                        name,
                        expires_in_s: expires_in_s.or(expires_in),
                        scope,
                    },
                )
                .await?;
            match client.output {
                OutputFormat::Json => emit(client.output, &t, &[], Vec::new())?,
                OutputFormat::Table => {
                    eprintln!("token {} created; it is shown only once:", t.record.id);
                    println!("{}", t.token);
                }
            }
        }
        TokenCommand::Ls { client } => {
            let api = ApiClient::new(&client)?;
            let list: Vec<TokenView> = api.get("/api/v1/tokens").await?;
            let rows = list
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.name.clone(),
                        t.created_at.to_rfc3339(),
                        t.expires_at
                            .map(|e| e.to_rfc3339())
                            .unwrap_or_else(|| "never".into()),
                        t.revoked_at.map(|e| e.to_rfc3339()).unwrap_or_default(),
                        t.scope.clone().unwrap_or_else(|| "all".into()),
                    ]
                })
                .collect();
            emit(
                client.output,
                &list,
                &["ID", "NAME", "CREATED", "EXPIRES", "REVOKED", "SCOPES"],
                rows,
            )?;
        }
        TokenCommand::Revoke { client, id } => {
            let api = ApiClient::new(&client)?;
            let () = api
                .call::<(), ()>(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{id}"),
                    None,
                    Duration::ZERO,
                )
                .await?;
            if client.output == OutputFormat::Table {
                println!("revoked {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hangar user ...`.
pub async fn user(cmd: UserCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCommand::Create {
            client,
            name,
            admin,
        } => {
            let api = ApiClient::new(&client)?;
            let u: CreatedUser = api
                .post("/api/v1/users", &CreateUserRequest { name, admin })
                .await?;
            match client.output {
                OutputFormat::Json => emit(client.output, &u, &[], Vec::new())?,
                OutputFormat::Table => {
                    eprintln!(
                        "user {} ({}) created; its token is shown only once:",
                        u.user.name, u.user.id
                    );
                    println!("{}", u.token);
                }
            }
        }
        UserCommand::Ls { client } => {
            let api = ApiClient::new(&client)?;
            let list: Vec<UserView> = api.get("/api/v1/users").await?;
            let rows = list
                .iter()
                .map(|u| vec![u.id.to_string(), u.name.clone(), u.is_admin.to_string()])
                .collect();
            emit(client.output, &list, &["ID", "NAME", "ADMIN"], rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `hangar vault ...`: works on the data directory directly (the key file and the store).
pub async fn vault(cmd: VaultCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VaultCommand::Rotate { data } => {
            let file = crate::config::FileConfig::load(data.config.as_deref())?;
            let data_dir = data
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(crate::config::default_data_dir);
            let url = file
                .store_url
                .unwrap_or_else(|| hangar_store::Store::sqlite_url(&data_dir.join("hangar.db")));
            let store = hangar_store::Store::connect(&url)
                .await
                .context("opening the store")?;
            let key_file = data_dir.join(hangar_server::credentials::VAULT_KEY_FILE);
            let report = hangar_server::credentials::rotate(
                &store,
                &key_file,
                &hangar_server::clock::SystemClock,
            )
            .await
            .with_context(|| format!("rotating the key ring in {}", key_file.display()))?;
            println!(
                "key version {} is current; {} credential(s) re-wrapped",
                report.new_version, report.rewrapped
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
