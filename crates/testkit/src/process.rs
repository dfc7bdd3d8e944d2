//! Waiting for a child process with a deadline: a test must fail with the
//! child's log, not hang, when the program under test does not exit.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits up to `within` for `child` to exit and returns its output. A child
/// still running then is killed, and the test panics with `what` and the
/// child's stderr.
pub fn wait_within(mut child: Child, within: Duration, what: &str) -> Output {
    let deadline = Instant::now() + within;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait for the killed child");
            panic!(
                "{what} (still running after {within:?}):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait for the child")
}

/// Sends `child` SIGTERM, then [`wait_within`].
pub fn terminate_within(child: Child, within: Duration, what: &str) -> Output {
    // SAFETY: kill(2) on our own child's pid, which it keeps until reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_within(child, within, what)
}

/// Starts `cmd` with stdout a pipe whose reader is already gone (as in
/// `prog | head -c0`, or a reader that left early), stderr captured: its
/// first write to stdout fails with EPIPE, or SIGPIPE kills it if it does
/// not ignore the signal. stdin is the caller's to set.
pub fn spawn_into_closed_pipe(cmd: &mut std::process::Command) -> Child {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the program under test")
}

/// [`spawn_into_closed_pipe`] for a program that ends by itself, waited
/// for up to 60 s.
pub fn run_into_closed_pipe(cmd: &mut std::process::Command) -> Output {
    let what = format!("{cmd:?} writing into a closed pipe");
    wait_within(spawn_into_closed_pipe(cmd), Duration::from_secs(60), &what)
}

/// Asserts that a program exited by itself with `code` (not killed by a
/// signal such as SIGPIPE) and wrote nothing to stderr.
pub fn assert_quiet_exit(out: &Output, code: i32, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        (out.status.code(), out.status.signal()),
        (Some(code), None),
        "{what}: {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{what} wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
