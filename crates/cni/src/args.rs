//! `CNI_ARGS`: the runtime's free-form `K=V;K=V` arguments.
//!
//! Only the conventional keys are typed (`IgnoreUnknown`, `IP`, `MAC` and the Kubernetes
//! pod identity); everything else is kept verbatim in [`CniArgs::other`] so the plugin can
//! log it. Unknown keys are never an error here: the plugin decides what to do with them.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::env::CNI_ARGS;
use crate::error::CniError;

/// Parsed `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `IgnoreUnknown=1|true|0|false`: the runtime asks plugins to ignore keys they do not
    /// know.
    pub ignore_unknown: bool,
    /// `IP=`: requested addresses, comma-separated; a `/prefix` on an entry is accepted
    /// and dropped (the prefix comes from the IPAM range).
    pub ips: Vec<IpAddr>,
    /// `MAC=`: requested MAC address, normalised to lower case with `:` separators.
    pub mac: Option<String>,
    /// `K8S_POD_NAMESPACE`.
    pub k8s_pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub k8s_pod_name: Option<String>,
    /// `K8S_POD_INFRA_CONTAINER_ID`.
    pub k8s_pod_infra_container_id: Option<String>,
    /// `K8S_POD_UID`.
    pub k8s_pod_uid: Option<String>,
    /// Every other pair, in order.
    pub other: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K=V`. Empty input and empty segments (a trailing `;`) are allowed; a
    /// value may contain `=`; an empty value leaves the typed field unset. A later key
    /// overrides an earlier one. Errors are code 4 naming `CNI_ARGS` and the key.
    pub fn parse(s: &str) -> Result<CniArgs, CniError> {
        let mut args = CniArgs::default();
        for pair in s.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(CniError::invalid_env(
                    CNI_ARGS,
                    format!("{pair:?} is not a KEY=VALUE pair"),
                ));
            };
            let bad = |msg: String| CniError::invalid_env(CNI_ARGS, format!("{key}: {msg}"));
            let text = || (!value.is_empty()).then(|| value.to_owned());
            match key {
                k if k.eq_ignore_ascii_case("IgnoreUnknown") => {
                    args.ignore_unknown = parse_bool(value).map_err(bad)?;
                }
                "IP" => args.ips = parse_ips(value).map_err(bad)?,
                "MAC" => {
                    args.mac = match value {
                        "" => None,
                        v => Some(parse_mac(v).map_err(|e| bad(e.to_string()))?),
                    }
                }
                "K8S_POD_NAMESPACE" => args.k8s_pod_namespace = text(),
                "K8S_POD_NAME" => args.k8s_pod_name = text(),
                "K8S_POD_INFRA_CONTAINER_ID" => args.k8s_pod_infra_container_id = text(),
                "K8S_POD_UID" => args.k8s_pod_uid = text(),
                _ => args.other.push((key.to_owned(), value.to_owned())),
            }
        }
        Ok(args)
    }
}

/// The boolean spellings the reference implementation accepts.
fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (use 1, true, 0 or false)")),
    }
}

/// `10.0.0.5,fd00::5/64` → addresses. A prefix, when present, must be valid.
fn parse_ips(v: &str) -> Result<Vec<IpAddr>, String> {
    v.split(',')
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let parsed = if entry.contains('/') {
                entry.parse::<IpNet>().map(|n| n.addr()).ok()
            } else {
                entry.parse::<IpAddr>().ok()
            };
            parsed.ok_or_else(|| format!("{entry:?} is not an IP address"))
        })
        .collect()
}

/// Why a MAC address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMac {
    #[error("{0:?} is not a MAC address (expected six hex octets like 02:42:ac:11:00:02)")]
    Syntax(String),
    #[error("{0:?} is a multicast MAC address")]
    Multicast(String),
    #[error("{0:?} is the all-zero MAC address")]
    Zero(String),
}

/// Validates a MAC address (`aa:bb:cc:dd:ee:ff` or with `-`) for use on an Ethernet
/// interface and normalises it to lower case with `:`.
///
/// Multicast and all-zero addresses are rejected here because the kernel would refuse
/// them later with a much less helpful error.
pub fn parse_mac(s: &str) -> Result<String, InvalidMac> {
    let bad = || InvalidMac::Syntax(s.into());
    let sep = if s.contains('-') { '-' } else { ':' };
    let mut octets = [0u8; 6];
    let mut parts = s.split(sep);
    for octet in &mut octets {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *octet = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if octets[0] & 1 == 1 {
        return Err(InvalidMac::Multicast(s.into()));
    }
    if octets == [0; 6] {
        return Err(InvalidMac::Zero(s.into()));
    }
    Ok(octets
        .iter()
        .map(|o| format!("{o:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::code;

    fn err(s: &str) -> CniError {
        CniArgs::parse(s).expect_err(s)
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        assert_eq!(CniArgs::parse(";").unwrap(), CniArgs::default());
    }

    #[test]
    fn kubernetes_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;\
             K8S_POD_INFRA_CONTAINER_ID=3f2a9c;K8S_POD_UID=9b1c-44;FOO=bar=baz",
        )
        .unwrap();
        assert!(a.ignore_unknown);
        assert_eq!(a.k8s_pod_namespace.as_deref(), Some("default"));
        assert_eq!(a.k8s_pod_name.as_deref(), Some("web-0"));
        assert_eq!(a.k8s_pod_infra_container_id.as_deref(), Some("3f2a9c"));
        assert_eq!(a.k8s_pod_uid.as_deref(), Some("9b1c-44"));
        assert_eq!(a.other, vec![("FOO".to_owned(), "bar=baz".to_owned())]);
    }

    #[test]
    fn ignore_unknown_spellings() {
        for (v, want) in [
            ("1", true),
            ("true", true),
            ("True", true),
            ("0", false),
            ("false", false),
        ] {
            assert_eq!(
                CniArgs::parse(&format!("IgnoreUnknown={v}"))
                    .unwrap()
                    .ignore_unknown,
                want
            );
        }
        let e = err("IgnoreUnknown=yes");
        assert_eq!(e.code, code::INVALID_ENV);
        assert!(e.msg.starts_with("CNI_ARGS: IgnoreUnknown:"), "{}", e.msg);
    }

    #[test]
    fn ips_single_list_and_prefixed() {
        let a = CniArgs::parse("IP=10.244.1.5").unwrap();
        assert_eq!(a.ips, vec!["10.244.1.5".parse::<IpAddr>().unwrap()]);
        let a = CniArgs::parse("IP=10.244.1.5/24,fd00::5/64").unwrap();
        assert_eq!(
            a.ips,
            vec![
                "10.244.1.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse::<IpAddr>().unwrap()
            ]
        );
        assert!(CniArgs::parse("IP=").unwrap().ips.is_empty());
    }

    #[test]
    fn bad_ips_name_key_and_value() {
        for bad in [
            "IP=10.0.0.256",
            "IP=10.0.0.5/33",
            "IP=10.0.0.5,nope",
            "IP=host",
        ] {
            let e = err(bad);
            assert_eq!(e.code, code::INVALID_ENV);
            assert!(e.msg.starts_with("CNI_ARGS: IP: "), "{}", e.msg);
            assert!(e.msg.contains("is not an IP address"), "{}", e.msg);
        }
    }

    #[test]
    fn mac_normalised() {
        let a = CniArgs::parse("MAC=02:42:AC:11:00:02").unwrap();
        assert_eq!(a.mac.as_deref(), Some("02:42:ac:11:00:02"));
        assert_eq!(parse_mac("0A-58-0a-f4-01-05").unwrap(), "0a:58:0a:f4:01:05");
    }

    #[test]
    fn bad_macs() {
        for bad in [
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "02:42:ac:11:00:0g",
            "2:42:ac:11:00:02",
            "0242.ac11.0002",
            "02:42-ac:11:00:02",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        let e = err("MAC=01:00:5e:00:00:01");
        assert!(e.msg.starts_with("CNI_ARGS: MAC: "), "{}", e.msg);
        assert!(e.msg.contains("multicast"), "{}", e.msg);
    }

    #[test]
    fn malformed_pairs() {
        for bad in ["FOO", "IgnoreUnknown=1;FOO", "=bar"] {
            let e = err(bad);
            assert_eq!(e.code, code::INVALID_ENV);
            assert!(e.msg.starts_with("CNI_ARGS: "), "{}", e.msg);
            assert!(e.msg.contains("KEY=VALUE"), "{}", e.msg);
        }
    }

    #[test]
    fn later_key_wins() {
        let a = CniArgs::parse("K8S_POD_NAME=a;K8S_POD_NAME=b;IP=10.0.0.1;IP=10.0.0.2").unwrap();
        assert_eq!(a.k8s_pod_name.as_deref(), Some("b"));
        assert_eq!(a.ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
    }
}
