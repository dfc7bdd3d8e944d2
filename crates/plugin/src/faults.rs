//! Fault injection, for tests: the ADD, DEL and guest paths pass through
//! named steps ([`step`]), each placed just before an action that changes
//! the node, the pod or a state file. With `TWEED_FAULT_AT=<k>` the k-th
//! step a call passes fails as that action would: it returns
//! [`INJECTED`] and the call goes on exactly as after a real failure there
//! (ADD rolls back, DEL carries on and reports it). With
//! `TWEED_FAULT_TRACE=<file>` every step's name is appended to the file,
//! one per line, so a test learns how many steps a call passes and can fail
//! each in turn (`crates/plugin/tests/fault_injection.rs`). With
//! `TWEED_FAULT_KILL_AT=<k>` the process SIGKILLs itself at the k-th step
//! instead — a kill -9 at an exact point, with no unwinding and no
//! rollback (`crates/plugin/tests/kill_at_step.rs`). With
//! `TWEED_FAULT_PANIC_AT=<k>` the k-th step panics instead, which tests
//! the panic hook (`crates/plugin/tests/panic.rs`).
//!
//! Only debug builds have it (`cfg(debug_assertions)`): the tests run the
//! binary Cargo builds for them in the dev profile, so they need no extra
//! build, no feature flag and no second binary, and CI's fresh machine
//! builds it with the ordinary `cargo test`. A Cargo feature would have
//! been the alternative, but features unify across one build, so the
//! suite's single `cargo test --workspace` would either leave it off (and
//! a `required-features` test silently not built) or turn it on for every
//! binary of the build. Release builds — the installed plugin, the image,
//! the DaemonSet — have debug assertions off: there [`step`] is an empty
//! inline function and neither variable is ever read.

use tweed_cni::error::CniError;

/// The step (counted from 1, over the whole call) that fails.
pub const AT_ENV: &str = "TWEED_FAULT_AT";
/// The step (counted from 1) at which the process kills itself.
pub const KILL_AT_ENV: &str = "TWEED_FAULT_KILL_AT";
/// A file each step's name is appended to.
pub const TRACE_ENV: &str = "TWEED_FAULT_TRACE";
/// The step (counted like [`AT_ENV`]) that panics instead, to test the
/// panic hook (`panic_hook.rs`, `tests/panic.rs`).
pub const PANIC_AT_ENV: &str = "TWEED_FAULT_PANIC_AT";
/// The code of an injected failure: in the plugin's own range but apart
/// from its real codes (100 to 107), so a test never takes a real failure
/// for the injected one. Not 999: the reference plugins answer that for
/// any untyped error, and a delegate's error is passed on with its code.
pub const INJECTED: u32 = 150;

/// Passes step `name`: fails if it is the one `TWEED_FAULT_AT` names.
#[cfg(debug_assertions)]
pub fn step(name: &str) -> Result<(), CniError> {
    injector::step(name)
}

/// Release builds: no faults, nothing read.
#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn step(_name: &str) -> Result<(), CniError> {
    Ok(())
}

#[cfg(debug_assertions)]
mod injector {
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tweed_cni::error::CniError;

    struct Settings {
        at: Option<usize>,
        kill_at: Option<usize>,
        panic_at: Option<usize>,
        trace: Option<PathBuf>,
    }

    fn settings() -> &'static Settings {
        static SETTINGS: OnceLock<Settings> = OnceLock::new();
        SETTINGS.get_or_init(|| Settings {
            at: number(super::AT_ENV),
            kill_at: number(super::KILL_AT_ENV),
            panic_at: number(super::PANIC_AT_ENV),
            trace: std::env::var_os(super::TRACE_ENV).map(PathBuf::from),
        })
    }

    fn number(var: &str) -> Option<usize> {
        std::env::var(var).ok().and_then(|v| v.trim().parse().ok())
    }

    /// Steps passed so far in this process (one process is one CNI call).
    static PASSED: AtomicUsize = AtomicUsize::new(0);

    pub fn step(name: &str) -> Result<(), CniError> {
        let n = PASSED.fetch_add(1, Ordering::SeqCst) + 1;
        let s = settings();
        if let Some(path) = &s.trace {
            // A trace that cannot be written would make the test count
            // too few steps; it notices that (its minimum), so no error
            // here changes the call's behaviour.
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{name}");
            }
        }
        if s.kill_at == Some(n) {
            // As the OOM killer or a power cut would: nothing after this
            // runs, no destructor, no rollback. The trace line is written.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
        if s.panic_at == Some(n) {
            panic!("injected panic at step {n}: {name}");
        }
        if s.at == Some(n) {
            return Err(CniError::custom(
                super::INJECTED,
                format!("injected fault at step {n}: {name}"),
            ));
        }
        Ok(())
    }
}
