//! A throwaway PKI made with the openssl command: a CA, a server
//! certificate for an IP address, client certificates, and a rogue CA —
//! for the TLS tests of etcd and of the Kubernetes API server
//! ([`crate::kubeapi`] makes its certificates with [`make_ca`] and
//! [`make_leaf`]).

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The certificates of a TLS-enabled server, all PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A client certificate the server accepts (CN `tweed-client`).
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA the server knows nothing about, and a client certificate it
    /// signed: for tests that wrong credentials are refused.
    pub rogue_ca_cert: PathBuf,
    pub rogue_client_cert: PathBuf,
    pub rogue_client_key: PathBuf,
}

/// A throwaway PKI in `dir`: a CA, a server certificate for `ip` (also
/// usable as a client certificate, which etcd's own gateway needs), a
/// client certificate, and a rogue CA with its own client certificate.
pub fn generate(dir: &Path, ip: IpAddr) -> TlsFiles {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let p = |name: &str| dir.join(name);
    make_ca(dir, "ca", "tweed-test-ca");
    make_ca(dir, "rogue-ca", "tweed-rogue-ca");
    let server_ext = format!(
        "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\n"
    );
    make_leaf(dir, "ca", "server", "/CN=tweed-etcd", &server_ext);
    let client_ext = "basicConstraints=CA:FALSE\n\
                      keyUsage=critical,digitalSignature,keyEncipherment\n\
                      extendedKeyUsage=clientAuth\n";
    make_leaf(dir, "ca", "client", "/CN=tweed-client", client_ext);
    make_leaf(
        dir,
        "rogue-ca",
        "rogue-client",
        "/CN=tweed-client",
        client_ext,
    );
    TlsFiles {
        ca_cert: p("ca.crt"),
        server_cert: p("server.crt"),
        server_key: p("server.key"),
        client_cert: p("client.crt"),
        client_key: p("client.key"),
        rogue_ca_cert: p("rogue-ca.crt"),
        rogue_client_cert: p("rogue-client.crt"),
        rogue_client_key: p("rogue-client.key"),
    }
}

/// `<name>.crt` and `<name>.key` in `dir`: a self-signed P-256 CA valid
/// for a day.
pub fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// `<name>.crt` and `<name>.key` in `dir`, signed by the CA `<ca>` there,
/// for `subject` (`/O=group/CN=user`: Kubernetes reads a client
/// certificate's CN as the user and each O as a group), with the v3
/// extensions in `ext` (openssl extfile syntax).
pub fn make_leaf(dir: &Path, ca: &str, name: &str, subject: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    fs::write(dir.join(&ext_file), ext).unwrap_or_else(|e| panic!("write {ext_file}: {e}"));
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext_file,
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run openssl: {e} (apt-get install openssl)"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
