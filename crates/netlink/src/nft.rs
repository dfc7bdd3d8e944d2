//! Running `nft`: one JSON batch on `nft -j -f -` (a single kernel
//! transaction), and the ruleset read back with `nft -j list ruleset`.
//!
//! Shared by tweedd's masquerade, `tweedctl node-cleanup` (which deletes
//! tweedd's table) and `tweedctl flannel-cleanup`. Batches
//! are fed to `nft` here rather than through the `nftables` crate's
//! `apply_ruleset`, because that helper does not capture `nft`'s stderr and
//! the error text is what an operator needs.

use std::io::{self, Write};
use std::process::{Command, Output, Stdio};

use nftables::batch::Batch;
use nftables::schema::{NfListObject, Nftables, Table};
use nftables::types::NfFamily;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft is not installed (no `nft` in PATH): install the nftables package")]
    NftMissing,
    #[error("cannot run nft: {0}")]
    Spawn(#[source] io::Error),
    #[error("cannot encode the nftables ruleset: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("nft failed to {action}: {message}")]
    Nft {
        action: &'static str,
        message: String,
    },
    #[error("nft's JSON listing of the ruleset does not parse: {0}")]
    Listing(#[source] serde_json::Error),
}

/// Feeds one batch to `nft -j -f -` (one kernel transaction: all of it
/// happens or none), keeping its stderr for the error message.
pub fn apply(ruleset: &Nftables, action: &'static str) -> Result<(), NftError> {
    let payload = serde_json::to_vec(ruleset)?;
    let mut child = nft(&["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // The payload is a few KiB, well under a pipe's buffer, so writing it
    // all before reading nft's output cannot deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&payload).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    check(out, action).map(drop)
}

/// Deletes table `family name` with everything in it; a missing table is
/// fine (the batch adds it first, so the delete always finds one).
pub fn delete_table(family: NfFamily, name: &str, action: &'static str) -> Result<(), NftError> {
    let table = || {
        NfListObject::Table(Table {
            family,
            name: name.to_string().into(),
            handle: None,
        })
    };
    let mut batch = Batch::new();
    batch.add(table());
    batch.delete(table());
    apply(&batch.to_nftables(), action)
}

/// The whole ruleset of the calling thread's network namespace, as nft's
/// JSON (`{"nftables": [{"metainfo": ..}, {"table": ..}, ..]}`), untyped:
/// other owners' rules may hold expressions no schema here knows.
pub fn list_ruleset() -> Result<serde_json::Value, NftError> {
    let out = nft(&["-j", "list", "ruleset"])
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error)?;
    let out = check(out, "list the ruleset")?;
    serde_json::from_slice(&out.stdout).map_err(NftError::Listing)
}

fn nft(args: &[&str]) -> Command {
    let mut cmd = Command::new("nft");
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn spawn_error(e: io::Error) -> NftError {
    match e.kind() {
        io::ErrorKind::NotFound => NftError::NftMissing,
        _ => NftError::Spawn(e),
    }
}

fn check(out: Output, action: &'static str) -> Result<Output, NftError> {
    if out.status.success() {
        return Ok(out);
    }
    Err(NftError::Nft {
        action,
        message: message(&String::from_utf8_lossy(&out.stderr), out.status),
    })
}

/// nft's stderr in one line, without the meaningless `internal:0:0-0:`
/// locations its JSON parser prints.
fn message(stderr: &str, status: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("internal:0:0-0:").map_or(l, str::trim))
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        format!("{status} without a message")
    } else {
        lines.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_errors_read_as_one_line() {
        use std::os::unix::process::ExitStatusExt;
        let stderr = "internal:0:0-0: Error: Could not process rule: No such file or directory\n\n\
                      internal:0:0-0: Error: Parsing command array at index 5 failed.\n";
        assert_eq!(
            message(stderr, std::process::ExitStatus::from_raw(256)),
            "Error: Could not process rule: No such file or directory; \
             Error: Parsing command array at index 5 failed."
        );
    }
}
