//! The kube store over HTTPS against a real kube-apiserver (see
//! `kube_real`): with a kubeconfig naming the CA, and in-cluster — the
//! pod's service account (a token from `kubectl create token`, the CA and
//! the namespace under /var/run/secrets/kubernetes.io/serviceaccount,
//! KUBERNETES_SERVICE_HOST/PORT). A client that does not trust the
//! server's CA, or presents a token the server did not sign, is refused.
//!
//! The in-cluster case runs in a child process (this test binary again)
//! started by `unshare --mount`, so the service account files it mounts
//! over /run exist for it alone.

#[allow(dead_code)] // each test binary uses a part of it
mod kube_real;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use kube_real::Cluster;
use tweed_testkit::kubeapi::Credentials;
use tweedd::store::LeaseStore;
use tweedd::store::kube::node::Networks;
use tweedd::store::kube::{KubeOptions, KubeStore};

/// Set in the child: the directory holding the service account files.
const CHILD_ENV: &str = "TWEED_TEST_SERVICE_ACCOUNT";

fn networks() -> Networks {
    Networks {
        ipv4: Some("10.244.0.0/16".parse().unwrap()),
        ipv6: None,
    }
}

async fn store(kubeconfig: Option<PathBuf>) -> Result<KubeStore, String> {
    KubeStore::connect(KubeOptions {
        node_name: "n1".into(),
        kubeconfig,
        flannel_compat: false,
        networks: networks(),
    })
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_over_tls_trusts_only_its_ca() {
    let c = Cluster::start();
    c.api.create_node("n1", &["10.244.1.0/24"]);
    // The service account's token and the cluster's CA: lists.
    let good = store(Some(c.kubeconfig.clone())).await.unwrap();
    let snap = good.list().await.expect("list over TLS");
    assert!(snap.leases.is_empty());
    // A CA that did not sign the server's certificate: refused, saying why.
    let token = c.api.token(&c.sa);
    let rogue = c.api.write_kubeconfig(
        "rogue-ca",
        &c.api.certs().rogue_ca,
        &Credentials::Token(&token),
    );
    let err = store(Some(rogue)).await.unwrap().list().await.unwrap_err();
    let text = err.to_string().to_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls"),
        "the error should say why: {err}"
    );
    // The right CA, a token the server never issued: 401, said as such.
    let forged = c.api.write_kubeconfig(
        "forged",
        &c.api.certs().ca,
        &Credentials::Token("eyJhbGciOiJub25lIn0.e30.forged"),
    );
    let err = store(Some(forged)).await.unwrap().list().await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

/// The parent half: runs the child below in its own mount namespace with
/// the service account files and the API address in its environment.
#[test]
fn in_cluster_service_account() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "mounting needs root (the suite runs as root)");
    let c = Cluster::start();
    let sa = c.api.dir().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::copy(&c.api.certs().ca, sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("token"), c.api.token(&c.sa)).unwrap();
    std::fs::write(sa.join("namespace"), &c.sa.namespace).unwrap();
    refuses_plain_http(c.api.port());
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "in_cluster_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &sa)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", c.api.port().to_string())
        .env_remove("POD_NAMESPACE")
        .output()
        .expect("run unshare (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "in-cluster child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child did not run its checks:\n{text}"
    );
}

/// The server speaks only HTTPS: a plain HTTP request gets no answer of
/// the API's.
fn refuses_plain_http(port: u16) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET /api/v1/nodes HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        !out.contains("NodeList"),
        "the API answered plain HTTP: {out}"
    );
}

/// The child half (run only by `in_cluster_service_account`): mounts a
/// tmpfs over /run in its private mount namespace, puts the service
/// account where every pod has it, and connects without a kubeconfig.
#[test]
#[ignore = "run by in_cluster_service_account in its own mount namespace"]
fn in_cluster_child() {
    let Some(sa) = std::env::var_os(CHILD_ENV) else {
        panic!("{CHILD_ENV} unset: this half runs only under in_cluster_service_account");
    };
    nix::mount::mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount a private tmpfs over /run");
    let target = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
    std::fs::create_dir_all(target).unwrap();
    for f in ["ca.crt", "token", "namespace"] {
        std::fs::copy(Path::new(&sa).join(f), target.join(f)).unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = store(None).await.expect("in-cluster config");
        // Listing needs both: the server's certificate checked against the
        // service account's CA, and its token (RBAC lets the service
        // account list nodes, nobody anonymous).
        let snap = s.list().await.expect("list with the service account");
        assert!(snap.leases.is_empty(), "{:?}", snap.leases);
        // Segment blocks live in the namespace the service account file
        // names: the Role grants leases there and nowhere else, so a wrong
        // namespace would be refused.
        let blocks = s.segment_blocks("lab1");
        let snap = blocks
            .list()
            .await
            .expect("list segment blocks in the service account's namespace");
        assert!(snap.leases.is_empty());
    });
}
