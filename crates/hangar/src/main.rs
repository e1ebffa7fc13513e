//! The `hangar` binary: parses the command line and hands each command to its module.
//! Logic lives in the library crates; this crate wires config, state and output.

mod bench;
mod bench_connect;
mod bench_dashboard;
mod bench_metrics;
mod cli;
mod client;
mod commands;
mod commands_image;
mod commands_oauth;
mod config;
mod connect;
mod output;
mod shell;
mod up;

use clap::{CommandFactory, Parser};

use cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A terminal session leaves a blocking read on stdin that cannot be cancelled: do not let
    // it hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Up(args) => up::run(args)
            .await
            .map(|()| std::process::ExitCode::SUCCESS),
        Command::Sandbox(cmd) => commands::sandbox(cmd).await,
        Command::Image(cmd) => commands::image(cmd).await,
        Command::Connect(args) => connect::connect(args).await,
        Command::Credentials(cmd) => connect::credentials(cmd).await,
        Command::Token(cmd) => commands::token(cmd).await,
        Command::User(cmd) => commands::user(cmd).await,
        Command::Vault(cmd) => commands::vault(cmd).await,
        Command::Oauth(cmd) => commands_oauth::oauth(cmd).await,
        Command::Bench(args) => bench::run(args)
            .await
            .map(|()| std::process::ExitCode::SUCCESS),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hangar", &mut std::io::stdout());
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
