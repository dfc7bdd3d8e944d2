//! `tweedctl status`, `tweedctl lab status` and `tweedctl node-cleanup` on a
//! lab: status reads the lease, the agent and the kernel, as text or JSON,
//! and exits 3 naming the problem when the agent is gone; cleanup removes
//! everything tweed made on the node and nothing else.

use std::path::PathBuf;
use std::process::Command;

use tweed_lab::{Binaries, Lab, LabSpec};

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// tweedctl's exit code and its stdout followed by its stderr.
fn tweedctl(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin_dir().join("tweedctl"))
        .args(args)
        .output()
        .expect("run tweedctl");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The lab, removed on drop even when the test fails.
struct Guard(Option<Lab>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            lab.down();
        }
    }
}

#[test]
fn status_reports_and_cleanup_removes_everything_on_a_lab_node() {
    let name = format!("ts{}", std::process::id() % 100000);
    let lab = Lab::up(&LabSpec {
        name: name.clone(),
        nodes: 2,
        backend: "vxlan".into(),
        store: "file".into(),
        pods_per_node: 1,
        ip_masq: true,
        ipv6: false,
        underlay_subnets: 1,
        // A layer-2 segment too: its bridge and VXLAN device are tweed's.
        net_conf_overrides: serde_json::json!({"Segments": [{"Name": "lab1", "VNI": 4001, "Subnet": "192.168.90.0/24"}]})
            .as_object()
            .unwrap()
            .clone(),
        vm_nodes: Vec::new(),
        vm_options: Default::default(),
        binaries: Binaries::beside(&bin_dir().join("tweedctl")),
    })
    .expect("lab up");
    let mut guard = Guard(Some(lab));
    let lab = guard.0.as_mut().unwrap();
    let n1 = lab.state.node("n1").unwrap().clone();
    let subnet_file = lab.node_dir("n1").join("subnet.env");
    let subnet = subnet_file.to_str().unwrap().to_string();
    let status_as = |lab: &Lab, output: &str| {
        let n = lab.state.node("n1").unwrap();
        tweedctl(&[
            "status",
            "--netns",
            &n.ns,
            "--subnet-file",
            &subnet,
            "--health-addr",
            &n.health_addr,
            "--output",
            output,
        ])
    };
    let status = |lab: &Lab| status_as(lab, "text");
    let json = |out: &str| -> serde_json::Value {
        serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
    };

    let (code, out) = status(lab);
    assert_eq!(code, Some(0), "{out}");
    for needle in [
        "TWEED_SUBNET=",
        "ready",
        "peers known              1",
        "tweed.1",
        "vxlan vni 1 port 8472",
        "routes by tweedd (proto 77): 1",
        "segment lab1     bridge tws-lab1",
        "twx.4001 vni 4001 floods to 1 nodes",
        "no problems found",
    ] {
        assert!(out.contains(needle), "{needle:?} missing:\n{out}");
    }

    // The same as JSON, as the kernel has it.
    let (code, out) = status_as(lab, "json");
    assert_eq!(code, Some(0), "{out}");
    let v = json(&out);
    assert!(
        v["lease"]["values"]["TWEED_SUBNET"]
            .as_str()
            .is_some_and(|s| s.starts_with("10.244.")),
        "{v}"
    );
    assert_eq!(v["agent"]["ready"], true, "{v}");
    assert_eq!(v["agent"]["metrics"]["peers"], 1, "{v}");
    assert_eq!(v["kernel"]["tunnels"][0]["name"], "tweed.1", "{v}");
    assert_eq!(v["kernel"]["tunnels"][0]["vni"], 1, "{v}");
    assert_eq!(v["kernel"]["routes"], 1, "{v}");
    assert_eq!(v["kernel"]["segments"][0]["vni"], 4001, "{v}");
    assert_eq!(v["kernel"]["segments"][0]["floods_to"], 1, "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");

    // lab status: both agents ready with their one peer.
    let (code, out) = tweedctl(&["lab", "status", "--name", &name, "--output", "json"]);
    assert_eq!(code, Some(0), "{out}");
    let v = json(&out);
    assert_eq!(v["leases"], 2, "{v}");
    for node in v["nodes"].as_array().unwrap() {
        assert_eq!(
            (&node["agent"], &node["peers"]),
            (&serde_json::json!("ready"), &serde_json::json!(1)),
            "{v}"
        );
    }

    // The agent stops: the data plane stays, and status says what is wrong
    // and exits 3.
    lab.stop_agent("n1").unwrap();
    let (code, out) = status(lab);
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("cannot reach tweedd's health endpoint"),
        "{out}"
    );
    assert!(out.contains("routes by tweedd (proto 77): 1"), "{out}");
    let (code, out) = status_as(lab, "json");
    assert_eq!(code, Some(3), "{out}");
    let v = json(&out);
    assert_eq!(v["agent"]["reachable"], false, "{v}");
    assert!(
        v["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("cannot reach tweedd's health endpoint")),
        "{v}"
    );
    let (code, out) = tweedctl(&["lab", "status", "--name", &name]);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("n1: tweedd is stopped"), "{out}");
    // Into a pipe whose reader has gone: the same exit, nothing on stderr.
    let closed = tweed_testkit::process::run_into_closed_pipe(
        Command::new(bin_dir().join("tweedctl")).args(["lab", "status", "--name", &name]),
    );
    assert_eq!(closed.status.code(), Some(3), "{closed:?}");
    assert!(closed.stderr.is_empty(), "{closed:?}");

    // A dry run changes nothing; --yes removes every tweed object.
    let ns = n1.ns.clone();
    let block_file = lab.node_dir("n1").join("segments").join("lab1.env");
    let segment_dir = lab.node_dir("n1").join("segments");
    let segment_dir = segment_dir.to_str().unwrap().to_string();
    let cleanup = |yes: bool| {
        let mut args = vec!["netns", "exec", &ns];
        let exe = bin_dir().join("tweedctl");
        let exe = exe.to_str().unwrap().to_string();
        args.push(&exe);
        args.extend([
            "node-cleanup",
            "--subnet-file",
            &subnet,
            "--segment-dir",
            &segment_dir,
        ]);
        if yes {
            args.push("--yes");
        }
        let out = Command::new("ip").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plan = cleanup(false);
    assert!(
        plan.contains("would remove")
            && plan.contains("tweed.1")
            && plan.contains("twx.4001")
            && plan.contains("tws-lab1")
            && plan.contains("lab1.env"),
        "{plan}"
    );
    assert!(subnet_file.exists());
    assert!(block_file.exists());
    cleanup(true);
    let links = Command::new("ip")
        .args(["-n", &ns, "-o", "link"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).to_string();
    assert!(
        !links.contains("tweed.1")
            && !links.contains("tweed0")
            && !links.contains("twx.4001")
            && !links.contains("tws-lab1"),
        "{links}"
    );
    assert!(
        links.contains("eth0"),
        "the underlay interface must stay: {links}"
    );
    let routes = Command::new("ip")
        .args(["-n", &ns, "route", "show", "proto", "77"])
        .output()
        .unwrap();
    assert!(
        routes.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&routes.stdout)
    );
    let nft = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "list", "tables"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&nft.stdout).contains("tweed"));
    assert!(!subnet_file.exists());
    assert!(!block_file.exists(), "the segment's block file stayed");
}
