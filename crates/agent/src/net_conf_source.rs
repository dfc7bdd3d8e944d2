//! Where the network configuration comes from: a net-conf.json file, or,
//! as flannel does with its etcd store, the net-conf JSON in etcd at
//! `<prefix>/config`.
//!
//! The rule, chosen so that nothing that worked before changes meaning:
//!
//! - `--net-conf FILE` given: that file, always. A missing one is an error,
//!   never a silent fall-back to etcd (the operator named a file; using
//!   something else would hide a typo or a missing mount).
//! - not given, and the default file exists: the default file.
//! - not given, no default file, and the store is etcd: `<prefix>/config`,
//!   so a flannel node's etcd setup is enough to start tweedd.
//! - otherwise: the default file, whose absence is the error it always was.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{ConfigError, NetConfig};
use crate::store::StoreError;
use crate::store::any::AnyStore;
use crate::store::etcd::{EtcdOptions, EtcdStore};
use crate::store::retry;

/// `--net-conf`'s default.
pub const DEFAULT_NET_CONF: &str = "/etc/tweed/net-conf.json";

/// Where the configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A net-conf.json file.
    File(PathBuf),
    /// `<prefix>/config` in the etcd store.
    Etcd,
}

#[derive(Debug, Error)]
pub enum NetConfError {
    #[error("cannot read --net-conf {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {}: {source}", path.display())]
    InvalidFile { path: PathBuf, source: ConfigError },
    #[error("invalid network config in etcd key {key}: {source}")]
    InvalidKey { key: String, source: ConfigError },
    #[error(
        "no network config: no --net-conf given, no {} and no etcd key {key}; \
         put flannel's net-conf JSON at that key (etcdctl put {key} '{{\"Network\": \"10.244.0.0/16\", \"Backend\": {{\"Type\": \"vxlan\"}}}}') \
         or give --net-conf FILE",
        default.display()
    )]
    MissingKey { key: String, default: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Source {
    /// Applies the rule of the module documentation: `flag` is `--net-conf`
    /// as given (`None` when absent), `default` the file used without it.
    pub fn choose(flag: Option<&Path>, default: &Path, store_url: &str) -> Source {
        if let Some(path) = flag {
            return Source::File(path.to_path_buf());
        }
        // An error asking whether the file exists (a directory we may not
        // search) is left to the read, whose message names the file.
        let absent = matches!(default.try_exists(), Ok(false));
        if absent && AnyStore::is_etcd_url(store_url) {
            Source::Etcd
        } else {
            Source::File(default.to_path_buf())
        }
    }
}

/// Reads and checks a net-conf.json file.
pub fn read_file(path: &Path) -> Result<NetConfig, NetConfError> {
    let text = std::fs::read_to_string(path).map_err(|source| NetConfError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = NetConfig::parse(&text).map_err(|source| NetConfError::InvalidFile {
        path: path.to_path_buf(),
        source,
    })?;
    tracing::info!(file = %path.display(), "network config read from file");
    Ok(config)
}

/// Checks what etcd holds at `key` (`None`: no such key); `default` is the
/// file that was looked for first, named in the error.
pub fn parse_etcd(
    key: &str,
    value: Option<&str>,
    default: &Path,
) -> Result<NetConfig, NetConfError> {
    let Some(text) = value else {
        return Err(NetConfError::MissingKey {
            key: key.to_string(),
            default: default.to_path_buf(),
        });
    };
    NetConfig::parse(text).map_err(|source| NetConfError::InvalidKey {
        key: key.to_string(),
        source,
    })
}

/// Connects to the etcd store `url` names and reads the configuration from
/// `<prefix>/config`, retrying both while etcd is unreachable. The store
/// is returned for the agent to use.
pub async fn open_etcd(
    url: &str,
    options: EtcdOptions,
    default: &Path,
) -> Result<(AnyStore, NetConfig), NetConfError> {
    let (store, value) = retry::while_unavailable(|| {
        let options = options.clone();
        async move {
            let store = EtcdStore::connect(url, options).await?;
            let value = store.network_config().await?;
            Ok((store, value))
        }
    })
    .await?;
    let key = store.config_key();
    let config = parse_etcd(&key, value.as_deref(), default)?;
    tracing::info!(
        key,
        "network config read from etcd (no --net-conf given and no {})",
        default.display()
    );
    Ok((AnyStore::Etcd(store), config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_file_wins_and_etcd_is_only_the_fallback_for_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let present = dir.path().join("net-conf.json");
        std::fs::write(&present, "{}").unwrap();
        let absent = dir.path().join("missing.json");
        let etcd = "etcd://127.0.0.1:2379";
        let named = Path::new("/x/given.json");

        // Given explicitly: that file, even when missing and the store is etcd.
        assert_eq!(
            Source::choose(Some(named), &absent, etcd),
            Source::File(named.into())
        );
        // Default present: the file.
        assert_eq!(
            Source::choose(None, &present, etcd),
            Source::File(present.clone())
        );
        // Default absent: etcd for every etcd URL form, the file otherwise.
        for url in [
            etcd,
            "etcds://h:2379",
            "http://h:2379,http://g:2379",
            "https://h:2379",
        ] {
            assert_eq!(Source::choose(None, &absent, url), Source::Etcd, "{url}");
        }
        for url in ["file:///var/lib/tweed/store", "kube"] {
            assert_eq!(
                Source::choose(None, &absent, url),
                Source::File(absent.clone()),
                "{url}"
            );
        }
    }

    #[test]
    fn etcd_errors_name_the_key_the_field_and_both_fixes() {
        let key = "/coreos.com/network/config";
        let default = Path::new(DEFAULT_NET_CONF);
        let missing = parse_etcd(key, None, default).unwrap_err().to_string();
        for part in [key, "etcdctl put", "--net-conf", DEFAULT_NET_CONF] {
            assert!(missing.contains(part), "{missing:?} lacks {part:?}");
        }
        let bad = r#"{"Network": "10.244.0.0/16", "SubnetLen": 40}"#;
        let invalid = parse_etcd(key, Some(bad), default).unwrap_err().to_string();
        assert!(
            invalid.contains(key) && invalid.contains("SubnetLen"),
            "{invalid}"
        );
        let ok = r#"{"Network": "10.99.0.0/16", "SubnetLen": 26}"#;
        let config = parse_etcd(key, Some(ok), default).unwrap();
        assert_eq!(config.pools.ipv4.unwrap().subnet_len, 26);
    }
}
