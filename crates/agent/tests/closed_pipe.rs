//! tweedd's help and version into a pipe whose reader has gone: exit 0,
//! nothing on stderr, no panic.

use std::process::Command;

use tweed_testkit::process::{assert_quiet_exit, run_into_closed_pipe};

#[test]
fn help_and_version_into_a_closed_pipe_exit_0_quietly() {
    for arg in ["--help", "--version"] {
        let out = run_into_closed_pipe(Command::new(env!("CARGO_BIN_EXE_tweedd")).arg(arg));
        assert_quiet_exit(&out, 0, &format!("tweedd {arg}"));
    }
}
