//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::IpAddr;

use tweed_ipam::{IpamConf, IpamError, IpamSpec};

/// Parses and validates an `ipam` object given as JSON.
pub fn spec(json: &str) -> IpamSpec {
    conf(json).validate().expect("config should validate")
}

pub fn conf(json: &str) -> IpamConf {
    serde_json::from_str(json).expect("test JSON should parse")
}

/// Validates a config expected to be wrong and returns (field, message).
pub fn invalid(json: &str) -> (String, String) {
    match conf(json).validate() {
        Err(e @ IpamError::InvalidConfig { .. }) => {
            let IpamError::InvalidConfig { ref field, .. } = e else {
                unreachable!()
            };
            (field.clone(), e.to_string())
        }
        other => panic!("expected InvalidConfig for {json}, got {other:?}"),
    }
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// A spec over `ranges` (JSON list of range sets) with `data_dir` set to `dir`.
pub fn spec_in(dir: &std::path::Path, ranges: &str) -> IpamSpec {
    let mut s = spec(&format!(r#"{{"ranges": {ranges}}}"#));
    s.data_dir = dir.to_path_buf();
    s
}
