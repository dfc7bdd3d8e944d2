//! How a pod declares its wires, and the endpoints they join.
//!
//! The annotation is a comma- (or newline-) separated list of
//! `<ifname>=<peer>:<peer-ifname>`, where `<peer>` is a pod name in the same
//! namespace or `<namespace>/<pod>`: `eth1=r2:eth1, eth2=core/r3:eth1`.
//! It reads like the cable list a lab builder draws.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One end of a wire: an interface of a pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    /// `namespace/name`.
    pub pod: String,
    pub ifname: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("entry {entry:?}: {why}")]
    Entry { entry: String, why: String },
    #[error("{0}")]
    Endpoint(String),
}

impl Endpoint {
    pub fn new(pod: &str, ifname: &str) -> Result<Endpoint, SpecError> {
        let (ns, name) = pod.split_once('/').ok_or_else(|| {
            SpecError::Endpoint(format!("pod {pod:?} must be written namespace/name"))
        })?;
        check_dns_label(ns, "namespace")?;
        check_pod_name(name)?;
        check_ifname(ifname)?;
        Ok(Endpoint {
            pod: pod.to_string(),
            ifname: ifname.to_string(),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pod, self.ifname)
    }
}

impl FromStr for Endpoint {
    type Err = SpecError;
    /// `namespace/pod:ifname`.
    fn from_str(s: &str) -> Result<Endpoint, SpecError> {
        let (pod, ifname) = s.rsplit_once(':').ok_or_else(|| {
            SpecError::Endpoint(format!("{s:?} must be written namespace/pod:ifname"))
        })?;
        Endpoint::new(pod, ifname)
    }
}

impl TryFrom<String> for Endpoint {
    type Error = SpecError;
    fn try_from(s: String) -> Result<Endpoint, SpecError> {
        s.parse()
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.to_string()
    }
}

/// One wire as a pod declares it: its interface and the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    pub ifname: String,
    pub peer: Endpoint,
}

/// Parses the `tweed.io/wires` annotation of pod `namespace/name`.
///
/// Refused: an interface named twice, a wire to the pod itself, names that
/// cannot be interface or pod names.
pub fn parse_annotation(text: &str, pod: &str) -> Result<Vec<Declared>, SpecError> {
    let namespace = pod.split_once('/').map(|(ns, _)| ns).unwrap_or("default");
    let mut out: Vec<Declared> = Vec::new();
    for entry in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let bad = |why: String| SpecError::Entry {
            entry: entry.to_string(),
            why,
        };
        let (ifname, peer) = entry
            .split_once('=')
            .ok_or_else(|| bad("must be <ifname>=<peer-pod>:<peer-ifname>".into()))?;
        let (ifname, peer) = (ifname.trim(), peer.trim());
        check_ifname(ifname).map_err(|e| bad(e.to_string()))?;
        let (peer_pod, peer_if) = peer
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("the peer {peer:?} must be <pod>:<ifname>")))?;
        let peer_pod = if peer_pod.contains('/') {
            peer_pod.to_string()
        } else {
            format!("{namespace}/{peer_pod}")
        };
        let peer = Endpoint::new(&peer_pod, peer_if).map_err(|e| bad(e.to_string()))?;
        if peer.pod == pod {
            return Err(bad("a wire from a pod to itself is not supported".into()));
        }
        if out.iter().any(|d| d.ifname == ifname) {
            return Err(bad(format!("{ifname} is wired twice")));
        }
        out.push(Declared {
            ifname: ifname.to_string(),
            peer,
        });
    }
    Ok(out)
}

/// A Linux interface name: 1-15 bytes, no '/', ':', whitespace, not `.`/`..`.
pub fn check_ifname(name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '=' || c == ',' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(SpecError::Endpoint(format!(
            "{name:?} is not a valid interface name (1-15 characters, no '/', ':', '=', ',' or spaces)"
        )))
    }
}

fn check_dns_label(s: &str, what: &str) -> Result<(), SpecError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(SpecError::Endpoint(format!(
            "{what} {s:?} is not a valid Kubernetes name (lower-case letters, digits, '-')"
        )))
    }
}

fn check_pod_name(s: &str) -> Result<(), SpecError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.')
            .all(|label| check_dns_label(label, "pod").is_ok());
    if ok {
        Ok(())
    } else {
        Err(SpecError::Endpoint(format!(
            "pod name {s:?} is not a valid Kubernetes name (lower-case letters, digits, '-', '.')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_cable_list() {
        let d = parse_annotation("eth1=r2:eth1, eth2 = core/r3:e1-1\n", "lab/r1").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].ifname, "eth1");
        assert_eq!(d[0].peer.to_string(), "lab/r2:eth1");
        assert_eq!(d[1].peer.to_string(), "core/r3:e1-1");
        assert!(parse_annotation("", "lab/r1").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_cannot_be_cabled() {
        for (text, needle) in [
            ("eth1", "must be <ifname>="),
            ("eth1=r2", "must be <pod>:<ifname>"),
            ("eth1=r1:eth2", "to itself"),
            ("eth1=r2:eth1,eth1=r3:eth1", "wired twice"),
            (
                "averyveryverylongname=r2:eth1",
                "not a valid interface name",
            ),
            ("eth1=R2:eth1", "not a valid Kubernetes name"),
            ("eth1=r2:", "not a valid interface name"),
        ] {
            let e = parse_annotation(text, "lab/r1").unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn endpoints_round_trip_as_text() {
        let e: Endpoint = "lab/r1.a:eth1".parse().unwrap();
        assert_eq!(e.pod, "lab/r1.a");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"lab/r1.a:eth1\"");
        assert_eq!(serde_json::from_str::<Endpoint>(&json).unwrap(), e);
        assert!("r1:eth1".parse::<Endpoint>().is_err());
    }
}
