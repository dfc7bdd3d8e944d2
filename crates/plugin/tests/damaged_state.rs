//! Disk and file faults (issue 16 item 4): a full IPAM disk, and state
//! files that were truncated or overwritten with junk. Each gives a clear
//! error or a safe repair — never a panic, never a second owner for an
//! address — and a failed call leaves the node as it was.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::state::{assert_same_state, state};
use common::{Node, result_ip};
use serde_json::json;
use tweed_testkit::{TestNs, kernel, run_ok};

/// A small tmpfs mounted at a directory for the test's life.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn at(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        run_ok(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tweed-test",
                dir.to_str().unwrap(),
            ],
        );
        SmallDisk(dir.to_path_buf())
    }

    /// Writes a filler file until the disk answers ENOSPC.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return path,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .args(["-l", self.0.to_str().unwrap()])
            .status();
    }
}

#[test]
fn a_full_ipam_disk_fails_clearly_and_leaves_nothing() {
    let node = Node::new("fulldisk");
    let disk = SmallDisk::at(&node.data_dir(), "64k");
    let conf = node.conf_v4("fullnet", 22);
    let a = TestNs::new("fda");
    let b = TestNs::new("fdb");
    // A live pod, so the bridge and the store's directory and lock exist.
    node.add(&conf, "full-a", &a, "eth0")
        .expect_ok("ADD before the disk is full");
    let filler = disk.fill();

    let dirs: [&Path; 1] = [&node.dir.path().join("ipam")];
    let namespaces = [node.ns.name.as_str(), a.name.as_str(), b.name.as_str()];
    let before = state(&namespaces, &dirs);
    let out = node.add(&conf, "full-b", &b, "eth0");
    assert!(!out.ok(), "ADD on a full disk succeeded");
    let err = out.json();
    let msg = err["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("No space left on device") && msg.contains("fullnet"),
        "the error names the cause and the store: {err}"
    );
    eprintln!("full disk: {err}");
    assert_same_state(&before, &state(&namespaces, &dirs), "ADD on a full disk");
    assert!(a.ping("10.244.22.1"), "the live pod kept its network");

    std::fs::remove_file(filler).unwrap();
    let r = node
        .add(&conf, "full-b", &b, "eth0")
        .expect_ok("ADD once there is room");
    assert!(b.ping("10.244.22.1"));
    assert_ne!(result_ip(&r, true), "");
}

/// Reservation files as a crash or a bad disk may leave them: empty,
/// junk, cut short. The address stays taken (its owner may be alive); only
/// GC, which knows the live attachments, frees it.
#[test]
fn damaged_reservations_never_give_an_address_twice() {
    let node = Node::new("dmgres");
    let conf = node.conf_v4("dmgnet", 23);
    let store = node.data_dir().join("dmgnet");
    std::fs::create_dir_all(&store).unwrap();
    let damaged: [(&str, &[u8]); 3] = [
        ("10.244.23.2", b""),
        ("10.244.23.3", b"\xff\xfe\x00junk\r\n\r\n\x01"),
        ("10.244.23.4", b"c-cut-sho"),
    ];
    for (ip, content) in damaged {
        std::fs::write(store.join(ip), content).unwrap();
    }
    std::fs::write(store.join("last_reserved_ip.0"), b"\x00\xffnot an address").unwrap();

    let a = TestNs::new("dra");
    let r = node
        .add(&conf, "dmg-a", &a, "eth0")
        .expect_ok("ADD beside damaged files");
    assert_eq!(result_ip(&r, true), "10.244.23.5/24");
    assert!(a.ping("10.244.23.1"));
    node.del(&conf, "dmg-a", &a.path(), "eth0").expect_ok("DEL");
    for (ip, content) in damaged {
        assert_eq!(
            std::fs::read(store.join(ip)).unwrap(),
            content,
            "{ip} untouched by ADD and DEL"
        );
    }

    // GC with no valid attachment on this network frees them.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    node.call("GC", &gc).run().expect_ok("GC");
    assert_eq!(node.reservations("dmgnet"), Vec::<String>::new());
}

/// subnet.env cut short or overwritten: ADD answers an error naming the
/// file and creates nothing; a good file written again heals it.
#[test]
fn a_damaged_subnet_env_is_refused_by_name() {
    let node = Node::new("dmgenv");
    let file = node.dir.path().join("subnet.env");
    let conf = node.lease_conf("envnet", &file);
    let pod = TestNs::new("dep");
    for content in [
        &b"TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.5"[..],
        b"TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=",
        b"\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\xff\xfe garbage \xc3\x28\n",
    ] {
        std::fs::write(&file, content).unwrap();
        let out = node.add(&conf, "env-1", &pod, "eth0");
        assert!(
            !out.ok(),
            "ADD with a damaged subnet.env succeeded: {content:?}"
        );
        let err = out.json();
        let code = err["code"].as_u64().unwrap();
        let msg = err["msg"].as_str().unwrap();
        assert!(
            msg.contains(&file.display().to_string()),
            "the error names the file: {err}"
        );
        assert!(
            code != 999 && code != 0,
            "a typed error, not a crash: {err}"
        );
        eprintln!("subnet.env {:?}: {err}", String::from_utf8_lossy(content));
        assert!(node.reservations("envnet").is_empty(), "{content:?}");
        assert!(kernel::link(&pod.name, "eth0").is_none(), "{content:?}");
        assert!(node.host_veths().is_empty(), "{content:?}");
    }
    std::fs::write(
        &file,
        "TWEED_NETWORK=10.244.0.0/16\nTWEED_SUBNET=10.244.24.1/24\nTWEED_MTU=1450\nTWEED_IPMASQ=true\n",
    )
    .unwrap();
    node.add(&conf, "env-1", &pod, "eth0")
        .expect_ok("ADD after the agent rewrote it");
    assert!(pod.ping("10.244.24.1"));
}
