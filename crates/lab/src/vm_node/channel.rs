//! The channel between the lab and a VM node: request and reply files in
//! a directory both sides see (the host's, shared into the VM over
//! virtio 9p). A file channel, not a socket: any number of callers at
//! once (`lab check` beside `lab exec`), nothing to reconnect after a
//! call times out, and what went through is there to read afterwards.
//!
//! The caller writes `req/<id>.json` (through a temporary name and a
//! rename, so it is never read half-written); the server claims it by
//! renaming it to `req/<id>.taken`, answers in `reply/<id>.json` the same
//! way, and the caller reads and deletes both.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::node_kernel::ProcessSpec;
use crate::{LabError, procs};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Spawn {
        ns: String,
        argv: Vec<String>,
        log: PathBuf,
        caps: Option<Vec<u32>>,
    },
    Stop {
        pid: i32,
        grace_ms: u64,
    },
    Kill {
        pid: i32,
    },
    Alive {
        pid: i32,
    },
    Run {
        ns: String,
        process: ProcessSpec,
    },
    CreatePodNs {
        name: String,
    },
    DeleteNs {
        name: String,
    },
    Ping {
        ns: String,
        dst: IpAddr,
        tries: u32,
        timeout_ms: u64,
    },
    HttpGet {
        ns: String,
        addr: SocketAddr,
        path: String,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Done,
    Pid {
        pid: i32,
    },
    Bool {
        value: bool,
    },
    /// A finished program: its raw wait status, and its output (as text:
    /// what the lab runs prints text).
    Output {
        wait_status: i32,
        stdout: String,
        stderr: String,
    },
    Http {
        code: u16,
        body: String,
    },
    Error {
        message: String,
    },
}

/// How often each side looks for new files: short enough that a request
/// costs milliseconds, long enough that an idle VM stays idle.
const POLL: Duration = Duration::from_millis(20);

fn requests(dir: &Path) -> PathBuf {
    dir.join("req")
}

fn replies(dir: &Path) -> PathBuf {
    dir.join("reply")
}

/// Creates the channel's directories (the host does, before the VM boots).
pub fn create(dir: &Path) -> Result<(), LabError> {
    for d in [requests(dir), replies(dir)] {
        std::fs::create_dir_all(&d)
            .map_err(|e| LabError::io(format!("create {}", d.display()), e))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary name in the same
/// directory and a rename: readers see all of it or nothing.
fn publish(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

fn next_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends `request` to the VM node whose QEMU runs as `qemu_pid` and waits
/// up to `timeout` for its reply.
pub fn call(
    dir: &Path,
    qemu_pid: i32,
    request: &Request,
    timeout: Duration,
) -> Result<Reply, LabError> {
    let id = next_id();
    let req = requests(dir).join(format!("{id}.json"));
    let reply = replies(dir).join(format!("{id}.json"));
    let bytes = serde_json::to_vec(request).expect("requests serialise");
    publish(&req, &bytes).map_err(|e| LabError::io(format!("write {}", req.display()), e))?;
    let deadline = Instant::now() + timeout;
    let cleanup = || {
        let _ = std::fs::remove_file(&req);
        let _ = std::fs::remove_file(req.with_extension("taken"));
    };
    loop {
        if let Ok(bytes) = std::fs::read(&reply) {
            let _ = std::fs::remove_file(&reply);
            cleanup();
            return serde_json::from_slice(&bytes).map_err(|e| {
                LabError::Setup(format!("unreadable reply {}: {e}", reply.display()))
            });
        }
        if !procs::alive(qemu_pid) {
            cleanup();
            return Err(LabError::Setup(format!(
                "the VM node is gone (QEMU pid {qemu_pid} exited); its console is in {}",
                dir.join("console.log").display()
            )));
        }
        if Instant::now() > deadline {
            cleanup();
            return Err(LabError::Setup(format!(
                "the VM node did not answer {request:?} within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// The VM's side: answers every request with `handle`, each on a thread
/// of its own, for ever.
pub fn serve(dir: &Path, handle: fn(Request) -> Reply) -> ! {
    loop {
        let entries = std::fs::read_dir(requests(dir))
            .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
            .unwrap_or_default();
        for path in entries {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let taken = path.with_extension("taken");
            // The rename is the claim: a request is answered once.
            if std::fs::rename(&path, &taken).is_err() {
                continue;
            }
            let Some(id) = path.file_stem().map(|s| s.to_owned()) else {
                continue;
            };
            let reply_path = replies(dir).join(&id).with_extension("json");
            std::thread::spawn(move || {
                let reply = match std::fs::read(&taken)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                {
                    Ok(request) => handle(request),
                    Err(message) => Reply::Error {
                        message: format!("unreadable request {}: {message}", taken.display()),
                    },
                };
                let bytes = serde_json::to_vec(&reply).expect("replies serialise");
                if let Err(e) = publish(&reply_path, &bytes) {
                    eprintln!("vm-serve: cannot answer {}: {e}", reply_path.display());
                }
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_answered_once_and_its_files_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        let served = dir.path().to_path_buf();
        std::thread::spawn(move || {
            serve(&served, |r| match r {
                Request::Alive { pid } => Reply::Bool { value: pid == 7 },
                _ => Reply::Done,
            })
        });
        let me = std::process::id() as i32;
        let reply = call(
            dir.path(),
            me,
            &Request::Alive { pid: 7 },
            Duration::from_secs(5),
        );
        assert!(
            matches!(reply, Ok(Reply::Bool { value: true })),
            "{reply:?}"
        );
        let reply = call(
            dir.path(),
            me,
            &Request::Alive { pid: 8 },
            Duration::from_secs(5),
        );
        assert!(
            matches!(reply, Ok(Reply::Bool { value: false })),
            "{reply:?}"
        );
        for d in ["req", "reply"] {
            let left: Vec<_> = std::fs::read_dir(dir.path().join(d)).unwrap().collect();
            assert!(left.is_empty(), "{d}: {left:?}");
        }
    }

    #[test]
    fn a_dead_vm_fails_the_call_at_once() {
        let dir = tempfile::tempdir().unwrap();
        create(dir.path()).unwrap();
        // A pid that is not running: a child we reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let started = Instant::now();
        let err = call(
            dir.path(),
            pid,
            &Request::Alive { pid: 1 },
            Duration::from_secs(30),
        )
        .unwrap_err();
        assert!(err.to_string().contains("is gone"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
