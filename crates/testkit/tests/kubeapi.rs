//! The real-API-server fixture itself: it serves TLS with RBAC, applies a
//! manifest's identity objects, hands out service account tokens the
//! server accepts, comes back after a restart on the same port, and leaves
//! no process or file behind when dropped.

use std::path::Path;

use tweed_testkit::kubeapi::{Credentials, KubeApi, repo_root};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn serves_rbac_tokens_restarts_and_cleans_up() {
    let mut api = KubeApi::start();
    let dir = api.dir().to_path_buf();
    let manifest = repo_root().join("deploy/tweed.yaml");
    let sa = api.apply_rbac(&manifest);
    assert_eq!(sa.user(), "system:serviceaccount:kube-tweed:tweed");
    // Only the identity objects were applied: no DaemonSet, no ConfigMap.
    let ds = api.kubectl(&["get", "daemonset", "-n", "kube-tweed", "tweed"], None);
    assert!(!ds.status.success(), "the DaemonSet must not be applied");
    api.get_json(&["clusterrole", "tweed"]);

    // The token authenticates as the service account, through TLS.
    let kc = api.token_kubeconfig(&sa);
    let out = api
        .kubectl_as(&kc)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), sa.user(), "{out:?}");
    // A kubeconfig that trusts another CA is refused by kubectl.
    let rogue = api.write_kubeconfig("rogue", &api.certs().rogue_ca, &Credentials::Token("x"));
    let out = api
        .kubectl_as(&rogue)
        .args(["get", "nodes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{out:?}"
    );

    api.create_node("k1", &["10.244.1.0/24"]);
    let before = api.apiserver_pid().unwrap();
    api.stop_apiserver();
    assert!(!alive(before), "kube-apiserver {before} still runs");
    api.start_apiserver();
    let node = api.get_json(&["node", "k1"]);
    assert_eq!(node["spec"]["podCIDR"], "10.244.1.0/24", "kept in etcd");
    let rev = api.compact_etcd();
    assert!(rev > 1);

    let pids = [api.apiserver_pid().unwrap(), api.etcd_pid().unwrap()];
    drop(api);
    for p in pids {
        assert!(!alive(p), "process {p} outlived its fixture");
    }
    assert!(!dir.exists(), "{} outlived its fixture", dir.display());
}
