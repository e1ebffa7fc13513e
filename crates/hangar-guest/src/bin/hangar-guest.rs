//! `hangar-guest`: the guest agent binary. Wires arguments to [`hangar_guest::agent::run`];
//! when it is PID 1 it first forks off an init that reaps orphans
//! ([`hangar_guest::agent::init`]).

use std::path::PathBuf;
use std::process::ExitCode;

use hangar_guest::agent::{self, init, DEFAULT_SOCKET_PATH, LISTEN_ENV};

const USAGE: &str = "usage: hangar-guest [--listen PATH]

Serves the hangar guest protocol on a unix socket.
  --listen PATH   socket path (env HANGAR_GUEST_LISTEN; default /run/hangar/agent.sock)
  --version       print the version and exit";

fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(Some(path)) => path,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("hangar-guest: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init::become_init_if_pid1() {
        eprintln!("hangar-guest: cannot become init: {}", chain(&e));
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hangar-guest: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(agent::run(listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hangar-guest: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The socket path, or `None` when the program should just exit (help, version).
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<PathBuf>, String> {
    let mut listen = std::env::var_os(LISTEN_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let value = args.next().ok_or("--listen needs a path")?;
                listen = Some(PathBuf::from(value));
            }
            "--version" | "-V" => {
                println!("hangar-guest {}", hangar_guest::VERSION);
                return Ok(None);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => match other.strip_prefix("--listen=") {
                Some(value) => listen = Some(PathBuf::from(value)),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    Ok(Some(
        listen.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH)),
    ))
}

/// The error and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
