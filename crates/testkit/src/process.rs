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
