//! The control plane's certificates and kubeconfigs, as cluster/lib/pki.sh
//! makes them for `scripts/cluster.sh`: one CA signs etcd's and the API
//! server's serving certificates and every client certificate; a client's
//! CN is its user name and its O its group (`system:masters` for the
//! admin). The service account key pair signs and checks tokens.

use std::path::{Path, PathBuf};

use crate::pki::{make_ca, make_leaf, openssl};

/// Every file of the fixture's PKI, in one directory.
#[derive(Debug, Clone)]
pub struct Certs {
    pub ca: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub etcd_cert: PathBuf,
    pub etcd_key: PathBuf,
    /// The API server's (and etcdctl's) client certificate towards etcd.
    pub etcd_client_cert: PathBuf,
    pub etcd_client_key: PathBuf,
    /// The cluster admin: user `tweed-test-admin` in `system:masters`.
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    /// A CA that signed nothing the servers trust or present.
    pub rogue_ca: PathBuf,
}

const SERVING: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
                       basicConstraints=CA:FALSE\n\
                       keyUsage=critical,digitalSignature,keyEncipherment\n\
                       extendedKeyUsage=serverAuth,clientAuth\n";
const CLIENT: &str = "basicConstraints=CA:FALSE\n\
                      keyUsage=critical,digitalSignature,keyEncipherment\n\
                      extendedKeyUsage=clientAuth\n";

pub fn make(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    make_ca(dir, "ca", "tweed-test-kube-ca");
    make_ca(dir, "rogue-ca", "tweed-test-rogue-ca");
    make_leaf(dir, "ca", "apiserver", "/CN=kube-apiserver", SERVING);
    make_leaf(dir, "ca", "etcd", "/CN=etcd", SERVING);
    make_leaf(
        dir,
        "ca",
        "etcd-client",
        "/CN=kube-apiserver-etcd-client",
        CLIENT,
    );
    make_leaf(
        dir,
        "ca",
        "admin",
        "/O=system:masters/CN=tweed-test-admin",
        CLIENT,
    );
    // ES256 service account tokens: as good as RS256 for the API server,
    // and the key is made in milliseconds.
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "sa.key",
        ],
    );
    openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
    let p = |n: &str| dir.join(n);
    Certs {
        ca: p("ca.crt"),
        apiserver_cert: p("apiserver.crt"),
        apiserver_key: p("apiserver.key"),
        etcd_cert: p("etcd.crt"),
        etcd_key: p("etcd.key"),
        etcd_client_cert: p("etcd-client.crt"),
        etcd_client_key: p("etcd-client.key"),
        admin_cert: p("admin.crt"),
        admin_key: p("admin.key"),
        sa_key: p("sa.key"),
        sa_pub: p("sa.pub"),
        rogue_ca: p("rogue-ca.crt"),
    }
}

/// How a kubeconfig's user proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials<'a> {
    /// A client certificate and its key.
    Cert { cert: &'a Path, key: &'a Path },
    /// A bearer token (a service account's).
    Token(&'a str),
}

/// A kubeconfig for `server` trusting `ca`.
pub fn kubeconfig(server: &str, ca: &Path, user: &Credentials<'_>) -> String {
    let user = match user {
        Credentials::Cert { cert, key } => format!(
            "    client-certificate: {}\n    client-key: {}\n",
            cert.display(),
            key.display()
        ),
        Credentials::Token(t) => format!("    token: {t}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user:\n{user}",
        ca.display()
    )
}
