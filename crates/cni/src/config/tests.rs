use serde_json::json;

use super::*;
use crate::error::code;

const BRIDGE_CONF: &str = r#"{
    "cniVersion": "1.1.0",
    "name": "pods",
    "type": "tweed",
    "bridge": "tw0",
    "mtu": 1450,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]]},
    "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]},
    "args": {"cni": {"ips": ["10.244.1.9"]}},
    "runtimeConfig": {
        "ips": ["10.244.1.5/24"],
        "mac": "0a:58:0a:f4:01:05",
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
    }
}"#;

#[test]
fn loads_realistic_config_ignoring_unknown_keys() {
    let loaded = load(BRIDGE_CONF.as_bytes(), Command::Add).unwrap();
    assert_eq!(loaded.version, CniVersion::V1_1_0);
    let c = &loaded.conf;
    assert_eq!(c.name, "pods");
    assert_eq!(c.plugin_type, "tweed");
    assert_eq!(c.ipam.as_ref().unwrap()["type"], "host-local");
    assert_eq!(c.dns.as_ref().unwrap().nameservers, vec!["10.96.0.10"]);
    assert_eq!(c.args.as_ref().unwrap()["cni"]["ips"][0], "10.244.1.9");
    assert_eq!(c.runtime_config.ips, vec!["10.244.1.5/24"]);
    assert_eq!(c.runtime_config.mac.as_deref(), Some("0a:58:0a:f4:01:05"));
    assert_eq!(
        c.runtime_config.extra["portMappings"][0]["hostPort"],
        json!(8080)
    );
    assert!(c.prev_result.is_none());
    assert_eq!(c.valid_attachments(), None);
    // The plugin's own keys are still in the raw value.
    assert_eq!(loaded.raw["bridge"], "tw0");
}

#[test]
fn missing_cni_version_is_code_7() {
    let e = load(br#"{"name":"n","type":"tweed"}"#, Command::Add).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains("cniVersion"), "{}", e.msg);
}

#[test]
fn wrong_typed_generic_field_reports_path() {
    let e = load(
        br#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"ips":["10.0.0.1/24", 7]}}"#,
        Command::Add,
    )
    .unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(
        e.msg.starts_with("runtimeConfig.ips[1]: invalid type"),
        "{}",
        e.msg
    );

    let e = load(br#"{"cniVersion":1.0,"name":"n"}"#, Command::Add).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.starts_with("cniVersion: invalid type"), "{}", e.msg);

    let e = load(
        br#"{"cniVersion":"1.0.0","name":"n","dns":{"search":"x"}}"#,
        Command::Add,
    )
    .unwrap_err();
    assert!(e.msg.starts_with("dns.search: invalid type"), "{}", e.msg);
}

#[test]
fn broken_json_is_code_6() {
    let e = load(b"{\"cniVersion\": \"1.0.0\",", Command::Add).unwrap_err();
    assert_eq!(e.code, code::DECODE);
}

#[test]
fn unknown_version_is_code_1() {
    let e = load(br#"{"cniVersion":"0.2.0","name":"n"}"#, Command::Add).unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    assert!(e.msg.starts_with("cniVersion: "), "{}", e.msg);
    assert!(e.msg.contains("\"0.2.0\""), "{}", e.msg);
}

#[test]
fn commands_need_recent_enough_versions() {
    let conf = |v: &str| format!(r#"{{"cniVersion":"{v}","name":"n","type":"tweed"}}"#);
    let e = load(conf("0.3.1").as_bytes(), Command::Check).unwrap_err();
    assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
    assert!(e.msg.contains("CHECK needs CNI version 0.4.0"), "{}", e.msg);
    assert!(load(conf("0.4.0").as_bytes(), Command::Check).is_ok());
    for cmd in [Command::Status, Command::Gc] {
        let e = load(conf("1.0.0").as_bytes(), cmd).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{cmd}");
        assert!(load(conf("1.1.0").as_bytes(), cmd).is_ok(), "{cmd}");
    }
    for cmd in [Command::Add, Command::Del] {
        assert!(load(conf("0.3.0").as_bytes(), cmd).is_ok());
    }
}

#[test]
fn name_required_except_for_version() {
    for cmd in [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
    ] {
        let e = load(br#"{"cniVersion":"1.1.0","type":"tweed"}"#, cmd).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG, "{cmd}");
        assert!(e.msg.starts_with("name: "), "{}", e.msg);
    }
    assert!(load(br#"{"cniVersion":"1.1.0"}"#, Command::Version).is_ok());
    let e = load(br#"{"cniVersion":"1.1.0","name":"my net"}"#, Command::Add).unwrap_err();
    assert_eq!(e.code, code::INVALID_CONFIG);
    assert!(e.msg.contains("' '"), "{}", e.msg);
}

#[test]
fn null_optional_sections_are_absent() {
    let c = load(
        br#"{"cniVersion":"1.0.0","name":"n","ipam":null,"dns":null,"prevResult":null,"runtimeConfig":null}"#,
        Command::Add,
    )
    .unwrap()
    .conf;
    assert_eq!(c.ipam, None);
    assert_eq!(c.dns, None);
    assert_eq!(c.prev_result().unwrap(), None);
    assert_eq!(c.runtime_config, RuntimeConfig::default());
}

#[test]
fn prev_result_is_decoded_with_path() {
    let c = NetConf::from_value(&json!({
        "cniVersion": "1.0.0", "name": "n", "type": "tweed",
        "prevResult": {"cniVersion": "1.0.0",
                       "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1"}]}
    }))
    .unwrap();
    let prev = c.prev_result().unwrap().unwrap();
    assert_eq!(prev.ips[0].address.to_string(), "10.244.1.5/24");

    let c = NetConf::from_value(&json!({
        "cniVersion": "1.0.0", "name": "n",
        "prevResult": {"ips": [{"address": "10.244.1.5"}]}
    }))
    .unwrap();
    let e = c.prev_result().unwrap_err();
    assert_eq!(e.code, code::DECODE);
    assert_eq!(
        e.msg,
        "prevResult.ips[0].address: invalid CIDR \"10.244.1.5\""
    );
}

#[test]
fn gc_attachments_in_netconf() {
    let c = load(
        br#"{"cniVersion":"1.1.0","name":"pods","type":"tweed",
             "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],
             "cni.dev/attachments":[{"containerID":"c0","ifname":"eth0"}]}"#,
        Command::Gc,
    )
    .unwrap()
    .conf;
    let atts = c.valid_attachments().unwrap();
    assert_eq!(atts.len(), 1);
    assert_eq!(atts[0].container_id, "c1");

    let c = NetConf::from_value(&json!({"cniVersion":"1.1.0","name":"n",
        "cni.dev/attachments": null}))
    .unwrap();
    assert_eq!(c.valid_attachments(), Some(&[][..]));
}
