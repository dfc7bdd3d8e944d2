//! tweedctl writing into a pipe whose reader has gone (`tweedctl ... |
//! head -1`): no panic, nothing on stderr, and the exit code still says
//! what the command found.

use std::process::{Command, Output};

use tweed_testkit::process::{assert_quiet_exit as assert_quiet, run_into_closed_pipe};

fn tweedctl(args: &[&str]) -> Output {
    run_into_closed_pipe(Command::new(env!("CARGO_BIN_EXE_tweedctl")).args(args))
}

#[test]
fn help_and_version_into_a_closed_pipe_exit_0_quietly() {
    for args in [&["--help"][..], &["--version"], &["lab", "up", "--help"]] {
        assert_quiet(&tweedctl(args), 0, &format!("tweedctl {args:?}"));
    }
}

/// `status` of a node without tweed: problems found (exit 3), reported
/// into a closed pipe without a word on stderr, as text and as JSON.
#[test]
fn status_into_a_closed_pipe_keeps_its_exit_code_and_stays_quiet() {
    tweed_testkit::require_root();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("subnet.env");
    for output in ["text", "json"] {
        let out = tweedctl(&[
            "status",
            "--subnet-file",
            missing.to_str().unwrap(),
            // Nothing listens on port 1: the agent is "unreachable".
            "--health-addr",
            "127.0.0.1:1",
            "--wire-dir",
            dir.path().to_str().unwrap(),
            "--segment-dir",
            dir.path().to_str().unwrap(),
            "--output",
            output,
        ]);
        assert_quiet(&out, 3, &format!("status --output {output}"));
    }
}
