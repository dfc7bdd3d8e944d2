//! A panic still answers like a CNI plugin.
//!
//! The release build aborts on panic (`panic = "abort"`), so without this a
//! bug would end the call with SIGABRT, nothing on stdout for the runtime
//! to report and no line in the call log — the two places an operator looks.
//! The hook answers the CNI error JSON (code 999, the generic code the
//! reference plugins use for an untyped failure; the message names where the
//! panic happened) on stdout, appends the call-log line with what the call
//! had learnt so far, and exits with status 1 like any failed call. It runs
//! before unwinding or aborting, so debug and release builds behave alike.

use std::io::Write;
use std::panic::PanicHookInfo;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use tweed_cni::error::CniError;

use crate::calllog::{self, CallRecord, LogFile};

/// The code of a panic's error.
pub const PANIC_CODE: u32 = 999;

/// What the hook reports: the call as far as it got.
struct Context {
    started: SystemTime,
    clock: Instant,
    record: CallRecord,
    log: LogFile,
    reply_version: String,
}

static CONTEXT: Mutex<Option<Context>> = Mutex::new(None);

/// Installs the hook for this process (one CNI call).
pub fn install(started: SystemTime, clock: Instant, reply_version: &str) {
    *lock() = Some(Context {
        started,
        clock,
        record: CallRecord::default(),
        log: calllog::default_log(),
        reply_version: reply_version.to_string(),
    });
    std::panic::set_hook(Box::new(on_panic));
}

/// Tells the hook what the call has learnt (which log, which version to
/// answer in, the container...), so its error and log line are the ones
/// the call itself would have given.
pub fn remember(record: &CallRecord, log: &LogFile, reply_version: &str) {
    if let Some(c) = lock().as_mut() {
        c.record = record.clone();
        c.log = log.clone();
        c.reply_version = reply_version.to_string();
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Context>> {
    // A panic while the lock is held cannot leave the context half-written
    // in a way that matters: use it as it is.
    CONTEXT.lock().unwrap_or_else(|p| p.into_inner())
}

fn on_panic(info: &PanicHookInfo<'_>) {
    let msg = message(info);
    // try_lock: a panic inside `remember` must not deadlock the hook.
    let context = match CONTEXT.try_lock() {
        Ok(mut g) => g.take(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let version = context.as_ref().map_or_else(
        || tweed_cni::CniVersion::LATEST.as_str().to_string(),
        |c| c.reply_version.clone(),
    );
    let error = CniError::new(PANIC_CODE, msg.clone());
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", error.to_json(&version));
        let _ = out.flush();
    }
    if let Some(mut c) = context {
        c.record.error = Some((PANIC_CODE, msg));
        c.record.append(&c.log, c.started, c.clock.elapsed());
    }
    std::process::exit(1);
}

/// `plugin panicked at <file>:<line>:<col>: <payload>`.
fn message(info: &PanicHookInfo<'_>) -> String {
    let location = info.location().map_or_else(
        || "an unknown location".to_string(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    format!("tweed panicked at {location}: {payload} (a bug: please report it with this message)")
}
