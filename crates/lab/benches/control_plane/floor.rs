//! The floor: `ip -batch` and `bridge -batch` programming the same 3×N
//! entries on a VXLAN device made by hand like tweed's, in a fresh
//! namespace; timed from spawning `ip` until `bridge` exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::common::{Scratch, ipn, run};
use crate::kernel::{Counts, PROTO, count_in, verify};
use crate::peers::Peer;

/// One floor round: a fresh namespace, the device, two batches in, two out.
pub struct FloorRound {
    pub add_s: f64,
    pub remove_s: f64,
}

pub fn floor_round(scratch: &mut Scratch, name: &str, peers: &[Peer], dir: &Path) -> FloorRound {
    let ns = scratch.netns(name);
    ipn(&ns, "link add eth0 type veth peer name eth0p");
    ipn(&ns, "addr add 198.18.0.1/24 dev eth0");
    ipn(&ns, "link set eth0p up");
    ipn(&ns, "link set eth0 up");
    ipn(
        &ns,
        "link add flannel.1 address 02:42:0a:80:00:01 mtu 1450 type vxlan id 1 local 198.18.0.1 dev eth0 dstport 8472 nolearning",
    );
    ipn(&ns, "addr add 10.128.0.0/32 dev flannel.1");
    ipn(&ns, "link set flannel.1 up");

    let mut ip_add = String::new();
    let mut br_add = String::new();
    let mut ip_del = String::new();
    let mut br_del = String::new();
    for p in peers {
        let gw = p.subnet.network();
        ip_add.push_str(&format!(
            "route replace {} via {gw} dev flannel.1 onlink proto {PROTO}\n",
            p.subnet
        ));
        br_add.push_str(&format!(
            "fdb replace {} dev flannel.1 dst {} self permanent\n",
            p.mac, p.public
        ));
        ip_del.push_str(&format!("route del {} via {gw} dev flannel.1\n", p.subnet));
        br_del.push_str(&format!(
            "fdb del {} dev flannel.1 dst {} self\n",
            p.mac, p.public
        ));
    }
    for p in peers {
        ip_add.push_str(&format!(
            "neigh replace {} lladdr {} dev flannel.1 nud permanent\n",
            p.subnet.network(),
            p.mac
        ));
        ip_del.push_str(&format!("neigh del {} dev flannel.1\n", p.subnet.network()));
    }
    let files: Vec<PathBuf> = [
        ("ip-add", &ip_add),
        ("br-add", &br_add),
        ("ip-del", &ip_del),
        ("br-del", &br_del),
    ]
    .iter()
    .map(|(f, text)| {
        let path = dir.join(f);
        std::fs::write(&path, text).expect("write batch");
        path
    })
    .collect();
    let batch = |tool: &str, file: &Path| {
        run(Command::new(tool).args(["-n", &ns, "-batch", &file.display().to_string()]));
    };
    let t = Instant::now();
    batch("ip", &files[0]);
    batch("bridge", &files[1]);
    let add = t.elapsed();
    verify(&ns, "flannel.1", peers);
    let t = Instant::now();
    batch("ip", &files[2]);
    batch("bridge", &files[3]);
    let remove = t.elapsed();
    assert_eq!(
        count_in(&ns, "flannel.1"),
        Counts::default(),
        "floor: entries left after removal"
    );
    // Deleting the namespace is not part of the figure.
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    scratch.namespaces.retain(|x| x != &ns);
    FloorRound {
        add_s: add.as_secs_f64(),
        remove_s: remove.as_secs_f64(),
    }
}
