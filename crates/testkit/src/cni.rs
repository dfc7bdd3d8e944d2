//! Invoking CNI plugins exactly as a runtime does: environment variables,
//! the configuration on stdin, the result or error on stdout.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where Debian's `containernetworking-plugins` puts the reference plugins.
pub const REFERENCE_PLUGIN_DIR: &str = "/usr/lib/cni";

/// A reference plugin from Debian's package; panics if it is not installed.
pub fn reference_plugin(name: &str) -> PathBuf {
    let p = Path::new(REFERENCE_PLUGIN_DIR).join(name);
    assert!(
        p.exists(),
        "{} is missing: install Debian's containernetworking-plugins (scripts/install-deps.sh)",
        p.display()
    );
    p
}

/// One plugin invocation.
#[derive(Debug, Clone)]
pub struct CniCall {
    pub plugin: PathBuf,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    /// Named namespace the plugin process runs in (the "node"), if any.
    pub node_netns: Option<String>,
    /// Kill the plugin with SIGKILL this long after it was started, if it
    /// is still running then ([`CniCall::kill_after`]).
    pub kill_after: Option<Duration>,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct CniOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident set size of the plugin process, in KiB.
    pub max_rss_kib: u64,
    /// True when the process died of the SIGKILL that
    /// [`CniCall::kill_after`] asked for (false when it finished first).
    pub killed: bool,
}

impl CniOutput {
    pub fn ok(&self) -> bool {
        self.exit_code == 0
    }

    /// The stdout as JSON (`Null` when empty).
    pub fn json(&self) -> Value {
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.stdout)
                .unwrap_or_else(|e| panic!("plugin stdout is not JSON ({e}): {}", self.stdout))
        }
    }

    /// Asserts success and returns the result JSON.
    pub fn expect_ok(&self, what: &str) -> Value {
        assert!(
            self.ok(),
            "{what}: exit {} stdout {} stderr {}",
            self.exit_code,
            self.stdout,
            self.stderr
        );
        self.json()
    }

    /// Asserts a CNI error with `code` and returns its `msg`.
    pub fn expect_error(&self, code: u64, what: &str) -> String {
        assert_ne!(
            self.exit_code, 0,
            "{what}: expected error {code}, got success: {}",
            self.stdout
        );
        let v = self.json();
        assert_eq!(
            v["code"].as_u64(),
            Some(code),
            "{what}: wrong error code, stdout {} stderr {}",
            self.stdout,
            self.stderr
        );
        v["msg"].as_str().unwrap_or_default().to_string()
    }
}

impl CniCall {
    pub fn new(plugin: impl Into<PathBuf>, command: &str) -> CniCall {
        CniCall {
            plugin: plugin.into(),
            env: vec![("CNI_COMMAND".into(), command.into())],
            stdin: Vec::new(),
            node_netns: None,
            kill_after: None,
        }
    }

    /// SIGKILLs the plugin `after` its start if it is still running, as a
    /// node losing power or the OOM killer would; [`CniOutput::killed`]
    /// tells whether it died so. The signal goes to the plugin's own pid,
    /// and only while that pid is still ours (not yet reaped), so it can
    /// never hit another process.
    pub fn kill_after(mut self, after: Duration) -> CniCall {
        self.kill_after = Some(after);
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> CniCall {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn without_env(mut self, k: &str) -> CniCall {
        self.env.retain(|(key, _)| key != k);
        self
    }

    /// The usual per-container variables.
    pub fn container(self, id: &str, netns: &str, ifname: &str) -> CniCall {
        self.env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
    }

    pub fn config(mut self, conf: &Value) -> CniCall {
        self.stdin = serde_json::to_vec(conf).expect("serialise config");
        self
    }

    pub fn raw_stdin(mut self, bytes: &[u8]) -> CniCall {
        self.stdin = bytes.to_vec();
        self
    }

    /// Runs the plugin inside the named namespace `node` instead of the
    /// caller's, so everything it creates on the "host" side stays there.
    pub fn in_node(mut self, node: &str) -> CniCall {
        self.node_netns = Some(node.to_string());
        self
    }

    pub fn run(&self) -> CniOutput {
        let mut cmd = Command::new(&self.plugin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.env.iter().any(|(k, _)| k == "CNI_PATH") {
            cmd.env("CNI_PATH", REFERENCE_PLUGIN_DIR);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Enter the node namespace between fork and exec (like nsenter):
        // no extra process, so timings are the plugin's own.
        let ns_file = self.node_netns.as_ref().map(|n| {
            std::fs::File::open(format!("/run/netns/{n}"))
                .unwrap_or_else(|e| panic!("open netns {n}: {e}"))
        });
        if let Some(f) = &ns_file {
            let fd = f.as_raw_fd();
            // SAFETY: setns is async-signal-safe; the fd stays open in the
            // parent (and so in the child) until after spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.plugin.display()));
        let pid = child.id() as libc::pid_t;
        let killer = self.kill_after.map(|after| Killer::start(pid, after));
        {
            let mut stdin = child.stdin.take().expect("stdin");
            // A plugin may exit before reading (VERSION); ignore EPIPE.
            let _ = stdin.write_all(&self.stdin);
        }
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut out_pipe = child.stdout.take().expect("stdout");
        let mut err_pipe = child.stderr.take().expect("stderr");
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        let _ = out_pipe.read_to_string(&mut stdout);
        let kill_sent = killer.is_some_and(|k| k.stop_after_exit(pid));
        // wait4 instead of Child::wait: it also reports the peak RSS.
        let mut status = 0;
        // SAFETY: rusage is plain data that wait4 fills in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: pid is our own unreaped child; both pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let elapsed = start.elapsed();
        assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
        drop(child);
        stderr.push_str(&err_reader.join().unwrap_or_default());
        let exit_code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            128 + libc::WTERMSIG(status)
        };
        CniOutput {
            exit_code,
            stdout,
            stderr,
            elapsed,
            max_rss_kib: usage.ru_maxrss as u64,
            killed: kill_sent
                && libc::WIFSIGNALED(status)
                && libc::WTERMSIG(status) == libc::SIGKILL,
        }
    }
}

/// The thread that SIGKILLs a plugin at a set moment unless told first
/// that the plugin has exited.
struct Killer {
    /// (the plugin has exited, the signal was sent), with its wake-up.
    state: std::sync::Arc<(std::sync::Mutex<(bool, bool)>, std::sync::Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

impl Killer {
    fn start(pid: libc::pid_t, after: Duration) -> Killer {
        let state = std::sync::Arc::new((
            std::sync::Mutex::new((false, false)),
            std::sync::Condvar::new(),
        ));
        let shared = state.clone();
        let thread = std::thread::spawn(move || {
            let (lock, wake) = &*shared;
            let deadline = Instant::now() + after;
            let mut s = lock.lock().expect("killer lock");
            while !s.0 {
                let now = Instant::now();
                if now >= deadline {
                    // SAFETY: kill(2) on our child, which has not been
                    // reaped (the parent reaps only after setting the
                    // flag checked above under this lock), so the pid
                    // cannot have been reused.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    s.1 = true;
                    return;
                }
                s = wake.wait_timeout(s, deadline - now).expect("killer wait").0;
            }
        });
        Killer { state, thread }
    }

    /// Waits (without reaping) until `pid` has exited, stops the killer
    /// and says whether it sent the signal.
    fn stop_after_exit(self, pid: libc::pid_t) -> bool {
        // SAFETY: siginfo_t is plain data that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; WNOWAIT leaves it unreaped, so
        // the killer's pid stays valid until it is told to stop.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(r, 0, "waitid: {}", std::io::Error::last_os_error());
        let (lock, wake) = &*self.state;
        let sent = {
            let mut s = lock.lock().expect("killer lock");
            s.0 = true;
            s.1
        };
        wake.notify_all();
        self.thread.join().expect("killer thread");
        sent
    }
}
