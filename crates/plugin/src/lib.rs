//! The `tweed` CNI plugin: connects a pod to the node bridge with a veth
//! pair, gives it addresses from tweed's host-local-compatible IPAM (or a
//! delegated IPAM plugin), and speaks CNI 0.3.0 to 1.1.0.
//!
//! [`run`] is the whole program: read the environment and stdin, dispatch
//! to [`commands`], print the result or error, append one line to the call
//! log.

pub mod calllog;
pub mod commands;
pub mod conf;
pub mod dataplane;
pub mod errors;
pub mod faults;
pub mod guest;
pub mod ipam;
pub mod names;
pub mod panic_hook;
pub mod urunc_hook;
pub mod wire_network;
pub mod wires;

use std::io::{Read, Write};
use std::time::{Instant, SystemTime};

use serde_json::Value;
use tweed_cni::env::{Command, Environment};
use tweed_cni::error::CniError;
use tweed_cni::version::CniVersion;

use crate::calllog::CallRecord;
use crate::commands::Call;
use crate::conf::Conf;

/// Runs one CNI call; returns the process exit code.
pub fn run() -> i32 {
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut record = CallRecord::default();
    let mut log = calllog::default_log();
    let mut reply_version = CniVersion::LATEST.as_str().to_string();
    panic_hook::install(started, clock, &reply_version);

    let outcome = dispatch(&mut record, &mut log, &mut reply_version);
    let code = match outcome {
        Ok(Some(v)) => {
            print(&v);
            0
        }
        Ok(None) => 0,
        Err(e) => {
            record.error = Some((e.code, e.msg.clone()));
            print(&e.to_json(&reply_version));
            1
        }
    };
    record.append(&log, started, clock.elapsed());
    code
}

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn dispatch(
    record: &mut CallRecord,
    log: &mut calllog::LogFile,
    reply_version: &mut String,
) -> Result<Option<Value>, CniError> {
    let command = Command::from_process()?;
    record.command = command.as_str().to_string();

    // Configurations are small: one read usually takes all of it.
    let mut stdin = Vec::with_capacity(16 * 1024);
    std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| CniError::io(format!("reading the configuration from stdin: {e}")))?;

    if command == Command::Version {
        let requested = tweed_cni::version::requested_version(&stdin);
        return Ok(Some(tweed_cni::version::version_response(
            requested.as_deref(),
        )));
    }

    // Learn where to log and which version to answer in even if the
    // configuration turns out to be invalid.
    if let Ok(raw) = serde_json::from_slice::<Value>(&stdin) {
        if let Some(hinted) = conf::log_file_hint(&raw) {
            *log = hinted;
        }
        if let Some(v) = raw.get("cniVersion").and_then(Value::as_str) {
            *reply_version = v.to_string();
        }
    }
    panic_hook::remember(record, log, reply_version);
    let conf = Conf::parse(&stdin, command)?;
    *log = conf.log.clone();
    record.network = Some(conf.name().to_string());

    let env = Environment::from_process()?;
    record.container_id = env.container_id.clone();
    record.netns = env.netns.as_ref().map(|p| p.display().to_string());
    record.ifname = env.ifname.clone();
    panic_hook::remember(record, log, reply_version);

    let mut call = Call {
        env: &env,
        conf: &conf,
        stdin: &stdin,
        record,
    };
    match command {
        Command::Add => commands::add::run(&mut call).map(Some),
        Command::Del => commands::del::run(&mut call).map(|_| None),
        Command::Check => commands::check::run(&mut call).map(|_| None),
        Command::Status => commands::status::run(&mut call).map(|_| None),
        Command::Gc => commands::gc::run(&mut call).map(|_| None),
        Command::Version => unreachable!("handled above"),
    }
}
