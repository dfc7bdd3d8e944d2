//! Lab nodes that bring their own kernel: QEMU VMs booted from Debian's
//! kernel, on the lab's underlay through a tap, beside namespace nodes
//! (docs/lab.md "VM nodes"). These run on the host, whatever its kernel:
//! the data plane they test is in the VMs'.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestLab;
use tweed_lab::Lab;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Two VM nodes and a namespace node in one lab: the VMs run Debian's
/// kernel (not the host's), every pod reaches every other one across the
/// kernels, TCP flows between VM pods, an agent restarted inside a VM
/// comes back, a pod deleted inside a VM leaves nothing there, and
/// `down` leaves no QEMU, tap or namespace behind.
#[test]
fn vm_nodes_and_a_namespace_node_share_one_pod_network() {
    let mut lab = TestLab::up_with("vm", 3, "vxlan", "etcd", |s| s.vm_nodes = vec![1, 2]);
    let host_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    for name in ["n1", "n2"] {
        let node = lab.lab().state.node(name).unwrap().clone();
        let vm = node
            .vm
            .clone()
            .unwrap_or_else(|| panic!("{name} is not a VM"));
        let out = lab.lab().exec_output(name, &["uname", "-r"]).unwrap();
        let release = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(release, vm.kernel, "{name} runs on its VM's kernel");
        assert_ne!(release, host_kernel.trim(), "{name}: not the host's kernel");
        // Its NIC became the node's eth0, with the node's underlay address.
        let addrs = lab.ip_json(name, &["-4", "addr", "show", "dev", "eth0"]);
        assert_eq!(
            addrs[0]["addr_info"][0]["local"], node.underlay_ipv4,
            "{name}: {addrs}"
        );
        // The VM is cabled to the lab's underlay bridge by its tap.
        let ul = lab.lab().state.underlay_ns.clone();
        let tap = lab.ip_json("underlay", &["-d", "link", "show", "dev", &vm.tap]);
        assert_eq!(tap[0]["master"], "ul0", "{ul}: {tap}");
        assert_eq!(tap[0]["linkinfo"]["info_kind"], "tun", "{tap}");
    }
    assert!(lab.lab().state.node("n3").unwrap().vm.is_none());
    common::pods_talk_anywhere(&lab);
    common::tcp_transfer(lab.lab(), "n1/p1", "n2/p1", 4 << 20);

    // The agent inside a VM stops and starts through the lab.
    lab.lab_mut().stop_agent("n2").unwrap();
    lab.lab_mut().start_agent("n2").unwrap();
    lab.lab().wait_converged().unwrap();
    common::pods_talk_anywhere(&lab);

    // A pod deleted in a VM: the plugin's DEL ran there and its namespace
    // is gone from the VM's kernel.
    let ns = lab.lab().state.node("n1").unwrap().pods[0].ns.clone();
    lab.lab_mut().del_pod("n1", "p1").unwrap();
    let out = lab
        .lab()
        .exec_output("n1", &["ip", "netns", "list"])
        .unwrap();
    assert!(!text(&out).contains(&ns), "{}", text(&out));
    let veths = lab.ip_json("n1", &["link", "show", "type", "veth"]);
    assert_eq!(veths.as_array().map(Vec::len), Some(0), "{veths}");

    // A VM node that cannot boot (an accelerator that does not exist)
    // leaves no tap and no directory behind.
    lab.lab_mut().state.vm_options.accel = "bogus".into();
    let err = lab.lab_mut().add_node_as(true).unwrap_err();
    assert!(err.to_string().contains("--vm-accel"), "{err}");
    let taps = lab.ip_json("underlay", &["link", "show", "type", "tun"]);
    assert_eq!(
        taps.as_array().map(Vec::len),
        Some(2),
        "only n1's and n2's taps: {taps}"
    );
    assert!(!lab.lab().node_dir("n4").exists());
    assert_eq!(lab.lab().state.nodes.len(), 3);

    let vms: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|n| lab.lab().state.node(n).unwrap().vm.clone().unwrap())
        .collect();
    let underlay = lab.lab().state.underlay_ns.clone();
    drop(lab);
    for vm in vms {
        assert!(
            !tweed_lab::procs::alive(vm.qemu_pid),
            "QEMU {} outlived the lab",
            vm.qemu_pid
        );
    }
    assert!(!Path::new("/run/netns").join(&underlay).exists());
}

/// The same through `tweedctl`, as a user would: a topology file puts n2
/// in a VM (`vm-nodes`), the kube store; `lab status` shows the VM,
/// `lab exec` runs inside it, `lab check` passes, a VM node is added
/// with `lab node add --vm`, `lab down` removes everything.
#[test]
fn tweedctl_lab_runs_vm_nodes_from_a_topology_file() {
    let bin = common::binaries().tweedctl();
    let name = format!("tvmc{}", std::process::id() % 100000);
    let dir = tempfile::tempdir().unwrap();
    let topo = dir.path().join("lab.yaml");
    std::fs::write(
        &topo,
        "nodes: 2\nvm-nodes: [n2]\ntopology:\n  nodes:\n    a: {node: n1}\n    b: {node: n2}\n",
    )
    .unwrap();
    let tweedctl = |args: &[&str]| {
        // `lab <command> --name N <the rest>`: the rest may end in `-- argv`.
        let out = Command::new(&bin)
            .args(["lab", args[0], "--name", &name])
            .args(&args[1..])
            .output()
            .expect("tweedctl");
        (out.status.code(), text(&out))
    };
    struct Down<'a>(&'a Path, &'a str);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new(self.0)
                .args(["lab", "down", "--name", self.1])
                .output();
        }
    }
    let _down = Down(&bin, &name);
    let (code, out) = tweedctl(&[
        "up",
        "--store",
        "kube",
        "--topology",
        topo.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("n2: VM ("), "{out}");

    let (code, out) = tweedctl(&["status", "--output", "json"]);
    assert_eq!(code, Some(0), "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert!(status["nodes"][0].get("vm").is_none(), "{status}");
    let vm = &status["nodes"][1]["vm"];
    assert_eq!(vm["running"], true, "{status}");
    let kernel = vm["kernel"].as_str().unwrap().to_string();

    let (code, out) = tweedctl(&["exec", "n2", "--", "uname", "-r"]);
    assert_eq!((code, out.trim()), (Some(0), kernel.as_str()));
    // The exit status comes back from the VM.
    let (code, _) = tweedctl(&["exec", "n2", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code, Some(7));
    let (code, out) = tweedctl(&[
        "exec", "n2/b", "--", "ip", "-4", "-o", "addr", "show", "eth0",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("10.244."), "{out}");

    let (code, out) = tweedctl(&["node", "add", "--vm"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = tweedctl(&["pod", "add", "n3", "c"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = tweedctl(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.matches("ok").count(), 9, "{out}");

    let lab = Lab::load(&name, common::binaries()).unwrap();
    let pids: Vec<i32> = lab
        .state
        .nodes
        .iter()
        .filter_map(|n| n.vm.as_ref().map(|v| v.qemu_pid))
        .collect();
    assert_eq!(pids.len(), 2);
    let (code, out) = tweedctl(&["down"]);
    assert_eq!(code, Some(0), "{out}");
    for pid in pids {
        assert!(
            !tweed_lab::procs::alive(pid),
            "QEMU {pid} outlived lab down"
        );
    }
}

/// Bad input leaves nothing: VM nodes with the file store are refused
/// with the reason, before anything is booted.
#[test]
fn vm_nodes_refuse_the_file_store() {
    let mut spec = common::spec("vmf", 1, "vxlan", "file");
    spec.vm_nodes = vec![1];
    let err = Lab::up(&spec).err().expect("refused");
    assert!(err.to_string().contains("--store etcd or kube"), "{err}");
    assert!(!tweed_lab::state::lab_dir(&spec.name).exists());
}
