//! The `etcd://` URL (every form in the [module documentation](super))
//! and the key prefix.

use super::errors::config_err;
use super::{DEFAULT_PORT, DEFAULT_PREFIX};
use crate::store::StoreError;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// Whether the endpoints speak TLS.
    pub tls: bool,
    /// `http://host:port` or `https://host:port`, as the client wants them.
    pub endpoints: Vec<String>,
}

impl EtcdUrl {
    /// Parses any of the forms in the module documentation.
    pub fn parse(url: &str) -> Result<EtcdUrl, StoreError> {
        let bad = |why: &str| {
            config_err(format!(
                "{url:?}: {why} (expected etcd://host:port[,host:port], etcds://... for TLS, \
                 or http(s)://host:port[,http(s)://host:port])"
            ))
        };
        let (tls, hosts): (bool, Vec<&str>) = if let Some(rest) = url.strip_prefix("etcd://") {
            (false, rest.split(',').collect())
        } else if let Some(rest) = url.strip_prefix("etcds://") {
            (true, rest.split(',').collect())
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let tls = url.starts_with("https://");
            let scheme = if tls { "https://" } else { "http://" };
            let mut hosts = Vec::new();
            for item in url.split(',') {
                let host = item
                    .strip_prefix(scheme)
                    .ok_or_else(|| bad("all endpoints must use the same scheme"))?;
                hosts.push(host);
            }
            (tls, hosts)
        } else {
            return Err(bad("unknown scheme"));
        };
        let scheme = if tls { "https" } else { "http" };
        let mut endpoints = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            // One trailing slash is harmless (`etcd://h:2379/`); on the last
            // host only, since that is where a URL's path would begin.
            let host = if i + 1 == hosts.len() {
                host.strip_suffix('/').unwrap_or(host)
            } else {
                host
            };
            let host_port = parse_host_port(host).map_err(|why| bad(&why))?;
            endpoints.push(format!("{scheme}://{host_port}"));
        }
        Ok(EtcdUrl { tls, endpoints })
    }
}

/// Checks one `host[:port]` and returns it with the port filled in.
pub(super) fn parse_host_port(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("an endpoint is empty".into());
    }
    if s.contains('@') {
        return Err(
            "credentials do not belong in the URL; use the username/password options".into(),
        );
    }
    if s.contains(['/', '?', '#']) {
        return Err(format!(
            "{s:?}: a path or query is not allowed; the key prefix is a separate option"
        ));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{s:?}: expected ':' after ']'"))?,
            ),
        };
        (format!("[{ip}]"), port)
    } else {
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.contains(':') {
            return Err(format!(
                "{s:?}: put IPv6 addresses in brackets ([fd00::1]:2379)"
            ));
        }
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        if !valid {
            return Err(format!("{host:?} is not a host name or address"));
        }
        (host.to_string(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("{p:?} is not a port")),
        },
    };
    Ok(format!("{host}:{port}"))
}

/// `/coreos.com/network/` → `/coreos.com/network`: one canonical spelling,
/// so keys never get a double slash.
pub(super) fn normalize_prefix(prefix: &str) -> Result<String, StoreError> {
    let p = prefix.trim_end_matches('/');
    if !p.is_empty() && !p.starts_with('/') {
        return Err(config_err(format!(
            "etcd prefix {prefix:?} must start with '/' (flannel's is {DEFAULT_PREFIX})"
        )));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(url: &str) -> Vec<String> {
        EtcdUrl::parse(url).unwrap().endpoints
    }

    #[test]
    fn urls_in_every_documented_form() {
        assert_eq!(endpoints("etcd://10.0.0.1:2379"), ["http://10.0.0.1:2379"]);
        assert_eq!(
            endpoints("etcd://a:1,b,[fd00::1]:3/"),
            ["http://a:1", "http://b:2379", "http://[fd00::1]:3"]
        );
        let u = EtcdUrl::parse("etcds://etcd-0.example:2379,etcd-1.example").unwrap();
        assert!(u.tls);
        assert_eq!(
            u.endpoints,
            ["https://etcd-0.example:2379", "https://etcd-1.example:2379"]
        );
        assert_eq!(
            endpoints("http://127.0.0.1:4001,http://127.0.0.1:2379"),
            ["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
        );
        assert!(EtcdUrl::parse("https://[::1]").unwrap().tls);
    }

    #[test]
    fn bad_urls_are_config_errors_that_say_why() {
        for (url, why) in [
            ("", "unknown scheme"),
            ("etcd:/h:1", "unknown scheme"),
            ("file:///x", "unknown scheme"),
            ("etcd://", "empty"),
            ("etcd://a:1,,b:2", "empty"),
            ("etcd://a:0", "not a port"),
            ("etcd://a:70000", "not a port"),
            ("etcd://a:x", "not a port"),
            ("etcd://fd00::1", "brackets"),
            ("etcd://[fd00::1", "unclosed"),
            ("etcd://[nope]:1", "not an IPv6"),
            ("etcd://root:pw@h:1", "credentials"),
            ("etcd://h:1/coreos.com", "prefix"),
            ("etcd://h:1?x=1", "query"),
            ("etcd://h a:1", "not a host"),
            ("http://a:1,https://b:1", "same scheme"),
        ] {
            match EtcdUrl::parse(url) {
                Err(StoreError::Config(msg)) => {
                    assert!(msg.contains(why), "{url:?}: {msg:?} lacks {why:?}")
                }
                other => panic!("{url:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(
            normalize_prefix("/coreos.com/network/").unwrap(),
            DEFAULT_PREFIX
        );
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert!(matches!(
            normalize_prefix("coreos.com"),
            Err(StoreError::Config(_))
        ));
    }
}
