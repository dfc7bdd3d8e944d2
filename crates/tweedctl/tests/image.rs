//! scripts/build-image.sh: the OCI archive holds the three binaries and a
//! working nft, and `tweed VERSION` runs from the unpacked root file system.
//! Built from this test run's own binaries (`--binaries`), so the suite
//! does not need a release build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

#[test]
fn the_image_holds_the_binaries_and_the_plugin_runs_from_its_rootfs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("tweed.tar");
    let printed = run(Command::new("bash")
        .arg(repo.join("scripts/build-image.sh"))
        .arg("--binaries")
        .arg(target_dir())
        .arg("--out")
        .arg(&archive));
    assert_eq!(printed.trim(), archive.to_str().unwrap());

    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let reference = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("image name")
        .to_string();
    assert!(reference.starts_with("localhost/tweed:"), "{reference}");
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{reference}", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    for b in ["tweed", "tweedd", "tweedctl"] {
        assert!(
            rootfs.join("usr/local/bin").join(b).is_file(),
            "{b} missing"
        );
    }
    let version = run(Command::new("/usr/sbin/chroot")
        .arg(&rootfs)
        .arg("/usr/local/bin/tweed")
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null()));
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["cniVersion"], "1.1.0");
    // nft came with every library it needs.
    let nft = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/usr/sbin/nft", "--version"]));
    assert!(nft.starts_with("nftables"), "{nft}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"][0], "/usr/local/bin/tweedd");
}
