//! tweed's one `nft` runner: a typed ruleset applied as one JSON batch on
//! `nft -j -f -` (a single kernel transaction: all of it happens or none),
//! the ruleset read back with `nft -j list ruleset`, and a table deleted.
//! Each runs in the calling thread's network namespace (the child
//! inherits it).
//!
//! Used by tweedd's masquerade, the plugin's guest table in the pod,
//! `tweedctl node-cleanup` (which deletes tweedd's table) and `tweedctl
//! flannel-cleanup`.
//!
//! Listing goes through the `nftables` crate's helper. Applying does not:
//! the helper's `apply_ruleset*` lets `nft`'s stderr through to ours
//! instead of capturing it (nftables 0.6.3; nftables-rs issue 209), and
//! nft's complaint is what an operator needs in the error — the plugin's
//! stderr is often swallowed by the runtime, and only the error reaches
//! its call log.

pub mod expr;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nftables::batch::Batch;
use nftables::helper::{self, NftablesError};
use nftables::schema::{NfListObject, Nftables, Table};
use nftables::types::NfFamily;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "nft is not installed (no `nft` in PATH, /usr/sbin, /sbin, /usr/bin or /bin): install the nftables package"
    )]
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
    #[error("nft's listing of the ruleset is unreadable: {0}")]
    Output(#[source] NftablesError),
    #[error("nft's JSON listing of the ruleset does not parse: {0}")]
    Listing(#[source] serde_json::Error),
}

/// Feeds one batch to `nft -j -f -`, keeping its stderr for the error
/// message; `action` says what the batch was for.
pub fn apply(ruleset: &Nftables, action: &'static str) -> Result<(), NftError> {
    let payload = serde_json::to_vec(ruleset)?;
    let mut child = Command::new(binary()?)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    // The payload is a few KiB, well under a pipe's buffer, so writing it
    // all before reading nft's output cannot deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&payload).map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().map_err(NftError::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(NftError::Nft {
        action,
        message: message(&stderr).unwrap_or_else(|| format!("{} without a message", out.status)),
    })
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

/// The whole ruleset, as nft's JSON (`{"nftables": [{"metainfo": ..},
/// {"table": ..}, ..]}`), untyped: other owners' rules may hold
/// expressions no schema here knows.
pub fn list_ruleset() -> Result<serde_json::Value, NftError> {
    let nft = binary()?;
    let text =
        helper::get_current_ruleset_raw(Some(&nft), ["list", "ruleset"]).map_err(|e| match e {
            NftablesError::NftExecution { inner, .. } => NftError::Spawn(inner),
            NftablesError::NftFailed { stderr, .. } => NftError::Nft {
                action: "list the ruleset",
                message: message(&stderr).unwrap_or_else(|| "failed without a message".into()),
            },
            other => NftError::Output(other),
        })?;
    serde_json::from_str(&text).map_err(NftError::Listing)
}

/// Where `nft` is: PATH first, then the places distributions install it
/// (container runtimes often give the plugin a short PATH).
fn binary() -> Result<PathBuf, NftError> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join("nft"))
        .find(|p| is_executable(p))
        .ok_or(NftError::NftMissing)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// nft's stderr in one line, without the meaningless `internal:0:0-0:`
/// locations its JSON parser prints; `None` when it said nothing.
fn message(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .map(|l| l.strip_prefix("internal:0:0-0:").map_or(l, str::trim))
        .filter(|l| !l.is_empty())
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nft_errors_read_as_one_line() {
        let stderr = "internal:0:0-0: Error: Could not process rule: No such file or directory\n\n\
                      internal:0:0-0: Error: Parsing command array at index 5 failed.\n";
        assert_eq!(
            message(stderr).unwrap(),
            "Error: Could not process rule: No such file or directory; \
             Error: Parsing command array at index 5 failed."
        );
        assert_eq!(message("\n"), None);
    }
}
