//! `hangar oauth ...`: clients through the admin API, signing keys on the data directory.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hangar_server::api::dto::{CreateOAuthClientRequest, CreatedOAuthClient, OAuthClientView};
use reqwest::Method;

use crate::cli::{OauthClientCommand, OauthCommand, OauthKeysCommand, OutputFormat};
use crate::client::ApiClient;
use crate::output::emit;

/// `hangar oauth ...`.
pub async fn oauth(cmd: OauthCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OauthCommand::Client(cmd) => client(cmd).await,
        OauthCommand::Keys(OauthKeysCommand::Rotate { data }) => rotate_keys(data).await,
    }
}

async fn client(cmd: OauthClientCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OauthClientCommand::Create {
            client,
            name,
            redirect_uris,
            scope,
            public,
        } => {
            let api = ApiClient::new(&client)?;
            let scope = hangar_identity::ScopeSet::parse_list(&scope.replace(' ', ","))
                .map_err(|e| anyhow::anyhow!("--scope: {}", e.description))?
                .to_string();
            let created: CreatedOAuthClient = api
                .post(
                    "/api/v1/oauth/clients",
                    &CreateOAuthClientRequest {
                        name,
                        redirect_uris,
                        scope,
                        public,
                        grant_types: Vec::new(),
                    },
                )
                .await?;
            match client.output {
                OutputFormat::Json => emit(client.output, &created, &[], Vec::new())?,
                OutputFormat::Table => {
                    println!("client_id:     {}", created.client.client_id);
                    match &created.client_secret {
                        Some(secret) => {
                            eprintln!("the client secret is shown only once:");
                            println!("client_secret: {secret}");
                        }
                        None => println!("public client: no secret; PKCE (S256) is required"),
                    }
                }
            }
        }
        OauthClientCommand::Ls { client } => {
            let api = ApiClient::new(&client)?;
            let list: Vec<OAuthClientView> = api.get("/api/v1/oauth/clients").await?;
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        c.client_id.clone(),
                        c.name.clone(),
                        c.client_type.clone(),
                        c.scope.clone(),
                        c.redirect_uris.join(" "),
                    ]
                })
                .collect();
            emit(
                client.output,
                &list,
                &["CLIENT_ID", "NAME", "TYPE", "SCOPES", "REDIRECT_URIS"],
                rows,
            )?;
        }
        OauthClientCommand::Rm { client, id } => {
            let api = ApiClient::new(&client)?;
            let () = api
                .call::<(), ()>(
                    Method::DELETE,
                    &format!("/api/v1/oauth/clients/{id}"),
                    None,
                    Duration::ZERO,
                )
                .await?;
            if client.output == OutputFormat::Table {
                println!("removed {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn rotate_keys(data: crate::cli::DataOpts) -> anyhow::Result<ExitCode> {
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
    let vault = Arc::new(
        hangar_server::credentials::CredentialVault::open(&data_dir)
            .context("opening the vault")?,
    );
    use hangar_server::clock::Clock;
    let kid = hangar_server::oauth::keys::add_key(
        &store,
        &vault,
        hangar_server::clock::SystemClock.now(),
    )
    .await
    .context("adding a signing key")?;
    println!("signing key {kid} is current; older keys stay published until their tokens expire");
    Ok(ExitCode::SUCCESS)
}
