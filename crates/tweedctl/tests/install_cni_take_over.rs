//! `tweedctl install-cni --take-over NAME`: another CNI config that would
//! sort first is set aside (renamed, never deleted) once tweed's conflist
//! is in place, and a config that still sorts first is named in a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

const TWEED: &str = r#"{"cniVersion":"1.0.0","name":"tweed","plugins":[{"type":"tweed"}]}"#;
const FLANNEL: &str = r#"{"name":"cbr0","cniVersion":"0.3.1","plugins":[{"type":"flannel","delegate":{"hairpinMode":true,"isDefaultGateway":true}},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
const LOOPBACK: &str = r#"{"cniVersion":"0.3.1","name":"lo","type":"loopback"}"#;

struct Node {
    dir: TempDir,
}

impl Node {
    /// A node whose conf dir holds `files` (name → content).
    fn with(files: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cni-conf.json"), TWEED).unwrap();
        std::fs::write(dir.path().join("tweed"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir(dir.path().join("net.d")).unwrap();
        let node = Node { dir };
        for (name, content) in files {
            node.write(name, content);
        }
        node
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn write(&self, name: &str, content: &str) {
        std::fs::write(self.conf_dir().join(name), content).unwrap();
    }

    fn install(&self, take_over: &[&str]) -> Output {
        let d = self.dir.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tweedctl"));
        cmd.arg("install-cni")
            .arg("--plugin")
            .arg(d.join("tweed"))
            .arg("--bin-dir")
            .arg(d.join("bin"))
            .arg("--conflist")
            .arg(d.join("cni-conf.json"))
            .arg("--conf-dir")
            .arg(self.conf_dir());
        for name in take_over {
            cmd.args(["--take-over", name]);
        }
        cmd.output().unwrap()
    }

    /// Every file in the conf dir (directories as `/`).
    fn files(&self) -> BTreeMap<String, String> {
        listing(&self.conf_dir())
    }
}

fn listing(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let content = if e.file_type().unwrap().is_dir() {
                "/".to_string()
            } else {
                std::fs::read_to_string(e.path()).unwrap()
            };
            (name, content)
        })
        .collect()
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

fn installed_tweed(files: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::from_str(&files["10-tweed.conflist"]).expect("tweed's conflist installed")
}

#[test]
fn take_over_renames_flannels_config_and_deletes_nothing() {
    // A directory with a config's name is not a config (libcni skips it).
    let node = Node::with(&[
        ("10-flannel.conflist", FLANNEL),
        ("99-loopback.conf", LOOPBACK),
    ]);
    std::fs::create_dir(node.conf_dir().join("00-not-a-file.conf")).unwrap();

    let (stdout, stderr) = ok(&node.install(&["10-flannel.conflist", "10-absent.conflist"]));
    let files = node.files();
    assert_eq!(installed_tweed(&files)["name"], "tweed");
    assert!(!files.contains_key("10-flannel.conflist"), "{files:?}");
    assert_eq!(files["10-flannel.conflist.tweed-replaced"], FLANNEL);
    assert_eq!(files["99-loopback.conf"], LOOPBACK);
    assert_eq!(files["00-not-a-file.conf"], "/");
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(
        stdout.contains("took over from 10-flannel.conflist")
            && stdout.contains("no 10-absent.conflist"),
        "{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");

    // flannel's installer writes its file again, changed: the earlier copy
    // is kept and this one goes beside it.
    let flannel_v2 = FLANNEL.replace("0.3.1", "1.0.0");
    node.write("10-flannel.conflist", &flannel_v2);
    ok(&node.install(&["10-flannel.conflist"]));
    let files = node.files();
    assert_eq!(files["10-flannel.conflist.tweed-replaced"], FLANNEL);
    assert_eq!(files["10-flannel.conflist.tweed-replaced.1"], flannel_v2);
    assert!(!files.contains_key("10-flannel.conflist"), "{files:?}");

    // The same bytes again: they replace their identical copy, no pile-up.
    node.write("10-flannel.conflist", FLANNEL);
    ok(&node.install(&["10-flannel.conflist"]));
    let again = node.files();
    assert_eq!(again, files);

    // The way back: rename it back, and it is in force again (tweed warns).
    std::fs::rename(
        node.conf_dir().join("10-flannel.conflist.tweed-replaced"),
        node.conf_dir().join("10-flannel.conflist"),
    )
    .unwrap();
    let (_, stderr) = ok(&node.install(&[]));
    assert!(
        stderr.contains("10-flannel.conflist sorts before"),
        "{stderr}"
    );
}

#[test]
fn a_config_that_still_sorts_first_is_named_in_a_warning() {
    let cilium = r#"{"cniVersion":"0.3.1","name":"cilium","plugins":[{"type":"cilium-cni"}]}"#;
    let node = Node::with(&[
        ("05-cilium.conflist", cilium),
        ("10-flannel.conflist", FLANNEL),
    ]);
    let (_, stderr) = ok(&node.install(&["10-flannel.conflist"]));
    let first = node.conf_dir().join("05-cilium.conflist");
    assert!(
        stderr.contains(&format!(
            "warning: {} sorts before 10-tweed.conflist",
            first.display()
        )) && stderr.contains("--take-over 05-cilium.conflist"),
        "{stderr}"
    );
    // Warned about, not touched; tweed's conflist is installed all the same.
    let files = node.files();
    assert_eq!(files["05-cilium.conflist"], cilium);
    assert_eq!(files["10-flannel.conflist.tweed-replaced"], FLANNEL);
    installed_tweed(&files);
}

#[test]
fn a_bad_take_over_name_installs_nothing() {
    let node = Node::with(&[("10-flannel.conflist", FLANNEL)]);
    for bad in ["../10-flannel.conflist", "10-tweed.conflist", ""] {
        let out = node.install(&[bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(stderr.contains("--take-over"), "{stderr}");
        assert_eq!(
            node.files().keys().collect::<Vec<_>>(),
            ["10-flannel.conflist"],
            "{bad:?}"
        );
        assert!(!node.dir.path().join("bin").exists());
    }
}
