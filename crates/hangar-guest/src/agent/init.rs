//! PID 1 duty. Inside a container (or a VM's initramfs) the agent is the first process, and
//! PID 1 must reap orphans and relay stop signals, which a tokio runtime does neither of.
//!
//! [`become_init_if_pid1`] forks: the child returns and becomes the real agent; the parent
//! stays behind as a minimal init that
//! - loops on `waitpid(-1)`, reaping every orphan reparented to it;
//! - forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the agent;
//! - exits with the agent's status when the agent exits (its code, or 128 + signal number),
//!   which ends the container (the kernel then kills everything left in the pid namespace).

use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{
    sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::GuestError;

/// Signals the init parent relays to the agent.
pub const FORWARDED_SIGNALS: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The agent's pid, read by the signal handler.
static AGENT_PID: AtomicI32 = AtomicI32::new(0);

/// If this process is PID 1, forks and turns the parent into the reaper described in the
/// module docs; returns `Ok(())` in the child (and, unchanged, when not PID 1).
///
/// Must be called before any other thread exists (before building the tokio runtime).
/// Errors: [`GuestError::Io`] when `fork` or the signal mask fails.
pub fn become_init_if_pid1() -> Result<(), GuestError> {
    if std::process::id() != 1 {
        return Ok(());
    }
    become_init()
}

/// Unconditionally forks into init parent + agent child (see [`become_init_if_pid1`]). Useful
/// under `PR_SET_CHILD_SUBREAPER`; the parent never returns.
///
/// Errors: [`GuestError::Io`] when `fork` or the signal mask fails.
pub fn become_init() -> Result<(), GuestError> {
    // Block the forwarded signals across the fork so none arrives before the parent's handlers
    // are installed (PID 1 ignores signals it has no handler for).
    let mut block = SigSet::empty();
    for sig in FORWARDED_SIGNALS {
        block.add(sig);
    }
    let mut previous = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut previous)).map_err(io)?;
    // SAFETY: called while the process is single-threaded (documented precondition), so the
    // child may run arbitrary code.
    match unsafe { fork() } {
        Err(e) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
            Err(io(e))
        }
        Ok(ForkResult::Child) => {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None).map_err(io)?;
            Ok(())
        }
        Ok(ForkResult::Parent { child }) => {
            AGENT_PID.store(child.as_raw(), Ordering::SeqCst);
            let action = SigAction::new(
                SigHandler::Handler(forward),
                SaFlags::SA_RESTART,
                SigSet::empty(),
            );
            for sig in FORWARDED_SIGNALS {
                // SAFETY: `forward` only loads an atomic and calls kill(2), both
                // async-signal-safe.
                let _ = unsafe { sigaction(sig, &action) };
            }
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
            reap_until(child)
        }
    }
}

extern "C" fn forward(sig: libc::c_int) {
    let agent = AGENT_PID.load(Ordering::SeqCst);
    if agent > 0 {
        // SAFETY: kill(2) is async-signal-safe; a failure (agent gone) needs no handling.
        unsafe {
            libc::kill(agent, sig);
        }
    }
}

/// Reaps every child until `agent` exits, then exits with its status.
fn reap_until(agent: Pid) -> ! {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == agent => std::process::exit(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == agent => {
                std::process::exit(128 + sig as i32)
            }
            // An orphan was reaped, or we were interrupted: keep going.
            Ok(_) | Err(Errno::EINTR) => {}
            // No children at all cannot happen while the agent lives; do not spin.
            Err(Errno::ECHILD) => std::process::exit(1),
            Err(_) => {}
        }
    }
}

fn io(e: Errno) -> GuestError {
    GuestError::Io(e.into())
}
