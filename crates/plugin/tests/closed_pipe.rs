//! The plugin answering into a stdout whose reader has gone: it is not
//! killed by SIGPIPE (its no_main start-up skips Rust's own handling), it
//! exits with the call's own code and still appends its call-log line.

use std::process::Command;

use tweed_testkit::process::{assert_quiet_exit, run_into_closed_pipe};

#[test]
fn an_error_reply_into_a_closed_pipe_still_exits_1_and_logs_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cni.log");
    let conf = dir.path().join("conf.json");
    std::fs::write(
        &conf,
        serde_json::json!({
            "cniVersion": "1.1.0",
            "name": "pipe",
            "type": "tweed",
            "logFile": log,
        })
        .to_string(),
    )
    .unwrap();
    // ADD without CNI_CONTAINERID: a CNI error (code 4) on stdout, with
    // nothing touched, so no privileges are needed.
    let out = run_into_closed_pipe(
        Command::new(env!("CARGO_BIN_EXE_tweed"))
            .env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_NETNS", "/var/run/netns/none")
            .env("CNI_PATH", "/nonexistent")
            .stdin(std::fs::File::open(&conf).unwrap()),
    );
    assert_quiet_exit(&out, 1, "tweed ADD into a closed pipe");
    let logged = std::fs::read_to_string(&log).expect("the call log was written");
    assert!(
        logged.contains("CNI_CONTAINERID"),
        "the call's line names the missing variable: {logged}"
    );
}
