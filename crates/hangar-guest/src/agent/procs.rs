//! Killing and signalling the process groups and sessions the agent starts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// The process groups (= sessions: every command is started with `setsid`) of commands that
/// are running, so a shutdown can kill them all.
#[derive(Debug, Default)]
pub(crate) struct ProcessTable {
    leaders: Mutex<HashSet<i32>>,
}

impl ProcessTable {
    /// Records a running session leader until the returned guard is dropped.
    pub(crate) fn register(self: &Arc<Self>, leader: i32) -> Registration {
        self.lock().insert(leader);
        Registration {
            table: Arc::clone(self),
            leader,
        }
    }

    /// SIGKILLs every registered session.
    pub(crate) fn kill_all(&self) {
        let leaders: Vec<i32> = self.lock().iter().copied().collect();
        for leader in leaders {
            kill_tree(leader);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<i32>> {
        self.leaders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a session leader from the [`ProcessTable`] when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    table: Arc<ProcessTable>,
    leader: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.table.lock().remove(&self.leader);
    }
}

/// SIGKILLs the process group `leader` and every process whose session id is `leader` (found
/// in `/proc`, which catches jobs a shell moved to other groups). Errors are ignored: the
/// processes may already be gone.
pub(crate) fn kill_tree(leader: i32) {
    if leader <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(leader), Signal::SIGKILL);
    for pid in session_members(leader) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Sends signal number `signal` to process group `pgid`; unknown numbers are ignored.
pub(crate) fn signal_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return;
    }
    if let Ok(sig) = Signal::try_from(signal) {
        let _ = killpg(Pid::from_raw(pgid), sig);
    }
}

/// Puts every signal back to its default action. For the forked child before exec: the agent
/// may itself have been started with signals ignored (a shell ignores SIGINT and SIGQUIT for
/// background jobs), and ignored dispositions survive exec. glibc's internal signals (32, 33)
/// refuse the change and stay as they are.
pub(crate) fn reset_signal_dispositions() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: signal(2) is async-signal-safe; failures (invalid or reserved numbers) are
        // harmless.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// Pids of live processes in session `sid`, from `/proc/<pid>/stat`; empty without `/proc`.
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_session(&stat))
                == Some(sid)
        })
        .collect()
}

/// The session id (field 6) of a `/proc/<pid>/stat` line; the command name (field 2) may
/// contain spaces and parentheses, so parsing starts after the last `)`.
fn parse_session(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: state ppid pgrp session ...
    rest.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_session_even_with_odd_names() {
        let stat = "1234 (a) b (c)) S 1 1234 4321 0 -1 4194560 100 0 0 0";
        assert_eq!(parse_session(stat), Some(4321));
        assert_eq!(parse_session("garbage"), None);
        assert_eq!(parse_session("1 (x) S 0"), None);
    }

    #[test]
    fn own_session_is_found() {
        let me = std::process::id() as i32;
        let sid = nix::unistd::getsid(None).expect("getsid").as_raw();
        assert!(session_members(sid).contains(&me));
    }

    #[test]
    fn registration_is_removed_on_drop() {
        let table = Arc::new(ProcessTable::default());
        let reg = table.register(4242);
        assert!(table.lock().contains(&4242));
        drop(reg);
        assert!(table.lock().is_empty());
    }
}
