//! `--etcd-tls-dir`: etcd's TLS files taken from one directory laid out as
//! a Kubernetes TLS Secret (`ca.crt`, `tls.crt`, `tls.key`). The DaemonSet
//! mounts the optional Secret `tweed-etcd` there, so one manifest serves
//! every store: the files are used only when the store is etcd over TLS,
//! and a kube or plain-etcd store ignores the directory (or its absence).

use std::path::Path;

use super::etcd::{EtcdOptions, EtcdUrl};

/// Fills the TLS files `options` lacks from `dir`, when `store` is an etcd
/// URL that speaks TLS. Files given by their own flags win; a client
/// certificate is taken only as a pair, so a half-filled Secret is
/// reported by the etcd store as a missing key or certificate.
pub fn fill(options: &mut EtcdOptions, store: &str, dir: &Path) {
    let is_tls = EtcdUrl::parse(store).is_ok_and(|u| u.tls);
    if !is_tls {
        return;
    }
    let file = |name: &str| Some(dir.join(name)).filter(|p| p.exists());
    if options.ca_file.is_none() {
        options.ca_file = file("ca.crt");
    }
    if options.cert_file.is_none() && options.key_file.is_none() {
        options.cert_file = file("tls.crt");
        options.key_file = file("tls.key");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(d.path().join(f), "x").unwrap();
        }
        d
    }

    #[test]
    fn tls_store_takes_the_secrets_files() {
        let d = dir_with(&["ca.crt", "tls.crt", "tls.key"]);
        let mut o = EtcdOptions::default();
        fill(&mut o, "https://10.0.0.1:2379", d.path());
        assert_eq!(o.ca_file, Some(d.path().join("ca.crt")));
        assert_eq!(o.cert_file, Some(d.path().join("tls.crt")));
        assert_eq!(o.key_file, Some(d.path().join("tls.key")));
    }

    #[test]
    fn other_stores_and_explicit_flags_are_left_alone() {
        let d = dir_with(&["ca.crt", "tls.crt", "tls.key"]);
        for store in [
            "kube",
            "etcd://10.0.0.1:2379",
            "http://10.0.0.1:2379",
            "file:///x",
        ] {
            let mut o = EtcdOptions::default();
            fill(&mut o, store, d.path());
            assert_eq!(o.ca_file, None, "{store}");
            assert_eq!(o.cert_file, None, "{store}");
        }
        let mut o = EtcdOptions {
            cert_file: Some("/mine.crt".into()),
            ..EtcdOptions::default()
        };
        fill(&mut o, "etcds://10.0.0.1:2379", d.path());
        assert_eq!(o.cert_file, Some("/mine.crt".into()));
        assert_eq!(o.key_file, None, "a pair is taken whole or not at all");
        assert_eq!(o.ca_file, Some(d.path().join("ca.crt")));
    }

    #[test]
    fn a_missing_directory_adds_nothing() {
        let mut o = EtcdOptions::default();
        fill(
            &mut o,
            "https://10.0.0.1:2379",
            Path::new("/nonexistent/tweed-etcd"),
        );
        assert_eq!(o.ca_file, None);
        assert_eq!(o.cert_file, None);
    }
}
