//! The kube store over HTTPS, as every real cluster serves the API: with a
//! kubeconfig naming the CA, and in-cluster — the pod's service account
//! (token and CA under /var/run/secrets/kubernetes.io/serviceaccount,
//! KUBERNETES_SERVICE_HOST/PORT). The fake API server serves TLS with a
//! throwaway PKI made by openssl; a client that does not trust its CA, or
//! presents the wrong token, is refused.
//!
//! The in-cluster case runs in a child process (this test binary again)
//! started by `unshare --mount`, so the service account files it mounts
//! over /run exist for it alone.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use fakekube::FakeApiServer;
use fakekube::client::call_ok;
use tweedd::store::LeaseStore;
use tweedd::store::kube::node::Networks;
use tweedd::store::kube::{KubeOptions, KubeStore};

const TOKEN: &str = "s3cret";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Set in the child: the directory holding the service account files.
const CHILD_ENV: &str = "TWEED_TEST_SERVICE_ACCOUNT";

struct Fixture {
    server: FakeApiServer,
    dir: tempfile::TempDir,
    tls: tweed_testkit::pki::TlsFiles,
}

impl Fixture {
    /// An HTTPS fake API server with one node that carries a tweed record.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let tls = tweed_testkit::pki::generate(&dir.path().join("pki"), LOCALHOST);
        let server = FakeApiServer::start_tls(
            (LOCALHOST, 0).into(),
            Some(TOKEN.into()),
            &std::fs::read(&tls.server_cert).unwrap(),
            &std::fs::read(&tls.server_key).unwrap(),
        )
        .expect("fake API server over TLS");
        Fixture { server, dir, tls }
    }

    fn kubeconfig(&self, ca: &Path, token: &str) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{token}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: https://{}\n    certificate-authority: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
                self.server.addr,
                ca.display()
            ),
        )
        .unwrap();
        path
    }
}

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
    let f = Fixture::new();
    // Over TLS the store lists and publishes like over plain HTTP.
    let good = store(Some(f.kubeconfig(&f.tls.ca_cert, TOKEN)))
        .await
        .unwrap();
    let snap = good.list().await.expect("list over TLS");
    assert!(snap.leases.is_empty());
    // A CA that did not sign the server's certificate: refused.
    let rogue = store(Some(f.kubeconfig(&f.tls.rogue_ca_cert, TOKEN)))
        .await
        .unwrap();
    let err = rogue.list().await.expect_err("an untrusted server");
    assert!(
        err.to_string().to_lowercase().contains("certificate")
            || err.to_string().to_lowercase().contains("tls"),
        "the error should say why: {err}"
    );
    // The right CA, the wrong token: 401, said as such.
    let intruder = store(Some(f.kubeconfig(&f.tls.ca_cert, "wrong")))
        .await
        .unwrap();
    let err = intruder.list().await.expect_err("a bad token");
    assert!(err.to_string().contains("401"), "{err}");
}

/// The parent half: runs the child below in its own mount namespace with
/// the service account files and the API address in its environment.
#[test]
fn in_cluster_service_account() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "mounting needs root (the suite runs as root)");
    let f = Fixture::new();
    let sa = f.dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::copy(&f.tls.ca_cert, sa.join("ca.crt")).unwrap();
    std::fs::write(sa.join("token"), TOKEN).unwrap();
    std::fs::write(sa.join("namespace"), "kube-system").unwrap();
    refuses_plain_http(&f);
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "in_cluster_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &sa)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", f.server.addr.port().to_string())
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

/// A sanity check that the server really speaks only HTTPS.
fn refuses_plain_http(f: &Fixture) {
    assert!(
        call_ok(f.server.addr, "GET", "/version", None).is_err(),
        "the TLS server answered plain HTTP"
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
        // service account's CA, and its token (the fake refuses requests
        // without it).
        let snap = s.list().await.expect("list with the service account");
        assert!(snap.leases.is_empty(), "{:?}", snap.leases);
    });
}
