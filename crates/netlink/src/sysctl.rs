//! Kernel parameters under `/proc/sys`.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the
//! file, so callers write per-namespace settings from inside
//! [`crate::NetNs::run`]. Keys are given as path segments rather than a
//! dotted string because interface names may themselves contain dots
//! (`eth0.100`).

use std::fs;
use std::path::PathBuf;

use crate::error::{NetlinkError, Result};

fn path(key: &[&str]) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    p.extend(key);
    p
}

fn name(key: &[&str]) -> String {
    key.join(".")
}

/// Writes `value` to the sysctl `key` (e.g. `["net", "ipv4", "ip_forward"]`).
pub fn write(key: &[&str], value: &str) -> Result<()> {
    fs::write(path(key), value).map_err(|source| NetlinkError::Sysctl {
        key: name(key),
        source,
    })
}

/// Reads the sysctl `key`, trimmed.
pub fn read(key: &[&str]) -> Result<String> {
    fs::read_to_string(path(key))
        .map(|s| s.trim().to_string())
        .map_err(|source| NetlinkError::Sysctl {
            key: name(key),
            source,
        })
}

/// Writes `value` only when the current value differs: avoids needless
/// writes (and their side effects, e.g. forwarding resets) on hot paths.
pub fn ensure(key: &[&str], value: &str) -> Result<()> {
    match read(key) {
        Ok(current) if current == value => Ok(()),
        _ => write(key, value),
    }
}
