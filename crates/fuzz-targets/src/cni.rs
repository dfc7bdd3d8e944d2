//! What the container runtime hands the plugin: the network configuration
//! on stdin (with `prevResult`) and `CNI_ARGS`.

use serde_json::Value;
use tweed_cni::args::parse_mac;
use tweed_cni::{CniArgs, CniResult, Command};
use tweed_plugin::conf::Conf;

const COMMANDS: [Command; 5] = [
    Command::Add,
    Command::Del,
    Command::Check,
    Command::Status,
    Command::Gc,
];

/// The plugin's configuration parse, for every command; an accepted
/// configuration's `prevResult` and GC list parse too (or fail cleanly).
pub fn config(data: &[u8]) {
    for command in COMMANDS {
        if let Ok(conf) = Conf::parse(data, command) {
            let _ = conf.net.prev_result();
            let _ = conf.net.valid_attachments();
            assert!(!conf.name().is_empty(), "an accepted config has a name");
        }
    }
}

/// A `prevResult` (a CNI result of any version): what the plugin writes
/// for it in the latest version reads back equal.
pub fn prev_result(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(result) = CniResult::from_json(&value) else {
        return;
    };
    let written = result.to_json(tweed_cni::CniVersion::LATEST);
    let again = CniResult::from_json(&written)
        .unwrap_or_else(|e| panic!("written result {written} does not parse: {e:?}"));
    assert_eq!(again, result, "result round trip through {written}");
}

/// `CNI_ARGS`: a `MAC=` is normalised once and for all, and a later parse
/// of what was understood gives the same.
pub fn args(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(args) = CniArgs::parse(text) else {
        return;
    };
    if let Some(mac) = &args.mac {
        assert_eq!(
            parse_mac(mac).as_deref(),
            Ok(mac.as_str()),
            "MAC normal form"
        );
    }
    for (k, v) in &args.other {
        assert!(!k.is_empty(), "empty key in {text:?} -> {v:?}");
    }
}
