//! Keeping the call log to a bounded size: a node must never fill its disk
//! with it.
//!
//! Many plugin processes append to one file at once, so rotation has to be
//! safe between processes: the one that finds the file full takes an
//! exclusive `flock` on it (waiting while another process rotates it),
//! checks that the path still names that very file (if another process
//! rotated it a moment ago, it does not), and renames
//! `cni.log.(n-1)` → `cni.log.n` … `cni.log` → `cni.log.1`. A process that
//! opened the file just before the rename appends its line to `cni.log.1`:
//! no line is lost, a file may end a few lines over the cap.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Where the call log goes and how much of it a node keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// The size at which the file is rotated; 0 never rotates.
    pub max_bytes: u64,
    /// How many rotated files (`<path>.1` … `<path>.<n>`) are kept.
    pub backups: u32,
}

/// 10 MiB a file and three old ones: at most 40 MiB on a node.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_BACKUPS: u32 = 3;

impl LogFile {
    /// The log at `path` with the default limits.
    pub fn at(path: PathBuf) -> LogFile {
        LogFile {
            path,
            max_bytes: DEFAULT_MAX_BYTES,
            backups: DEFAULT_BACKUPS,
        }
    }

    /// `<path>.<n>`, the n-th rotated file.
    pub fn backup(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Whether `file`, open on this log, has reached the cap.
    pub(super) fn is_full(&self, file: &File) -> bool {
        self.max_bytes > 0 && file.metadata().is_ok_and(|m| m.len() >= self.max_bytes)
    }

    /// Rotates the log if `file` (open on it and found full) is still the
    /// file at the path and no other process is rotating it. Errors are
    /// ignored: logging never fails a call, and the next call tries again.
    pub(super) fn rotate(&self, file: File) {
        // Whoever holds the lock is rotating this file: wait for it (a few
        // renames), then find the path names a new file. Not waiting would
        // let every writer in that moment append to the full file.
        let Ok(locked) = Flock::lock(file, FlockArg::LockExclusive) else {
            return;
        };
        if !names_same_file(&self.path, &locked) || !self.is_full(&locked) {
            return;
        }
        if self.backups == 0 {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        for n in (1..self.backups).rev() {
            let _ = std::fs::rename(self.backup(n), self.backup(n + 1));
        }
        let _ = std::fs::rename(&self.path, self.backup(1));
    }
}

fn names_same_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(at_path), Ok(open)) => at_path.dev() == open.dev() && at_path.ino() == open.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::calllog::CallRecord;

    fn record(i: usize) -> CallRecord {
        CallRecord {
            command: "ADD".into(),
            container_id: Some(format!("container-{i:05}")),
            ..Default::default()
        }
    }

    fn lines_in(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_full_log_is_rotated_and_old_files_beyond_the_backups_go() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile {
            path: dir.path().join("cni.log"),
            max_bytes: 1000,
            backups: 2,
        };
        let line_len = record(0).to_line(SystemTime::now(), Duration::ZERO).len() as u64;
        for i in 0..100 {
            record(i).append(&log, SystemTime::now(), Duration::ZERO);
        }
        for path in [log.path.clone(), log.backup(1), log.backup(2)] {
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size < log.max_bytes + line_len, "{path:?}: {size} bytes");
        }
        assert!(!log.backup(3).exists(), "only two rotated files are kept");
        // The newest lines are in the live file, the ones just before in .1.
        let index = |line: &String| -> usize {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            v["containerID"].as_str().unwrap()["container-".len()..]
                .parse()
                .unwrap()
        };
        let live = lines_in(&log.path);
        let older = lines_in(&log.backup(1));
        assert_eq!(index(live.last().unwrap()), 99);
        assert_eq!(index(older.last().unwrap()) + 1, index(&live[0]));
    }

    #[test]
    fn no_backups_starts_the_log_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile {
            path: dir.path().join("cni.log"),
            max_bytes: 500,
            backups: 0,
        };
        for i in 0..50 {
            record(i).append(&log, SystemTime::now(), Duration::ZERO);
        }
        assert!(std::fs::metadata(&log.path).unwrap().len() < 1000);
        assert!(!log.backup(1).exists());
    }

    /// Writers with their own open files, as separate plugin processes have,
    /// rotating the same log: no line is lost or torn, no file runs far
    /// over the cap.
    #[test]
    fn concurrent_writers_lose_no_line() {
        const WRITERS: usize = 8;
        const EACH: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile {
            path: dir.path().join("cni.log"),
            max_bytes: 4096,
            backups: 100,
        };
        std::thread::scope(|s| {
            for w in 0..WRITERS {
                let log = &log;
                s.spawn(move || {
                    for i in 0..EACH {
                        record(w * EACH + i).append(log, SystemTime::now(), Duration::ZERO);
                    }
                });
            }
        });
        let mut seen = Vec::new();
        let mut files = vec![log.path.clone()];
        files.extend(
            (1..=log.backups)
                .map(|n| log.backup(n))
                .filter(|p| p.exists()),
        );
        assert!(
            files.len() > 10,
            "the log was rotated: {} files",
            files.len()
        );
        assert!(!log.backup(log.backups).exists(), "nothing was dropped");
        for path in &files {
            let size = std::fs::metadata(path).unwrap().len();
            // A writer that opened the file just before it was rotated
            // still appends its line there.
            assert!(size < log.max_bytes + 2048, "{path:?}: {size} bytes");
            for line in lines_in(path) {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                seen.push(v["containerID"].as_str().unwrap().to_string());
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), WRITERS * EACH);
    }
}
