//! What each local wire end should be, from this node's records and the
//! ends other nodes publish. Pure: the kernel side is `cable`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tweed_wire::Endpoint;

/// A wire end on another node, as its lease publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEnd {
    /// The node's name (or address), for reports.
    pub node: String,
    /// Its underlay address: the far end of the tunnel.
    pub ip: IpAddr,
    /// The far end it is declared to meet.
    pub peer: Endpoint,
}

/// What one local end should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A veth pair straight to `peer`'s pod on this node. Both ends plan
    /// this; `maker` is the one that creates it (the lower endpoint).
    Veth { maker: bool },
    /// A VXLAN device in the pod, towards `remote` on `node`.
    Vxlan { node: String, remote: IpAddr },
    /// No device: the far end is missing or declared elsewhere.
    Waiting(String),
}

/// Plans every local end. `local` maps each local end to the far end it
/// declares; `remote` holds the other nodes' ends.
pub fn plan(
    local: &BTreeMap<Endpoint, Endpoint>,
    remote: &BTreeMap<Endpoint, RemoteEnd>,
) -> BTreeMap<Endpoint, Target> {
    local
        .iter()
        .map(|(end, peer)| {
            let target = if let Some(back) = local.get(peer) {
                if back == end {
                    Target::Veth { maker: end < peer }
                } else {
                    Target::Waiting(format!("{peer} is wired to {back}"))
                }
            } else if let Some(r) = remote.get(peer) {
                if &r.peer == end {
                    Target::Vxlan {
                        node: r.node.clone(),
                        remote: r.ip,
                    }
                } else {
                    Target::Waiting(format!("{peer} (on {}) is wired to {}", r.node, r.peer))
                }
            } else {
                Target::Waiting(format!("{} is not running on any node", peer.pod))
            };
            (end.clone(), target)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn local_pairs_get_a_veth_remote_ones_a_tunnel_the_rest_wait() {
        let local: BTreeMap<Endpoint, Endpoint> = [
            ("lab/a:eth1", "lab/b:eth1"),
            ("lab/b:eth1", "lab/a:eth1"),
            ("lab/a:eth2", "lab/c:eth1"),
            ("lab/a:eth3", "lab/d:eth1"),
            ("lab/a:eth4", "lab/e:eth1"),
            ("lab/b:eth2", "lab/a:eth9"),
        ]
        .into_iter()
        .map(|(a, b)| (ep(a), ep(b)))
        .collect();
        let remote: BTreeMap<Endpoint, RemoteEnd> =
            [("lab/c:eth1", "lab/a:eth2"), ("lab/d:eth1", "lab/x:eth1")]
                .into_iter()
                .map(|(a, b)| {
                    (
                        ep(a),
                        RemoteEnd {
                            node: "n2".into(),
                            ip: "198.18.0.2".parse().unwrap(),
                            peer: ep(b),
                        },
                    )
                })
                .collect();
        let p = plan(&local, &remote);
        assert_eq!(p[&ep("lab/a:eth1")], Target::Veth { maker: true });
        assert_eq!(p[&ep("lab/b:eth1")], Target::Veth { maker: false });
        assert_eq!(
            p[&ep("lab/a:eth2")],
            Target::Vxlan {
                node: "n2".into(),
                remote: "198.18.0.2".parse().unwrap()
            }
        );
        let waiting = |e: &str| match &p[&ep(e)] {
            Target::Waiting(why) => why.clone(),
            other => panic!("{e}: {other:?}"),
        };
        assert!(waiting("lab/a:eth3").contains("is wired to lab/x:eth1"));
        assert!(waiting("lab/a:eth4").contains("lab/e is not running"));
        // a:eth9 is not declared by a: b's end waits.
        assert!(
            waiting("lab/b:eth2").contains("lab/a is not running")
                || waiting("lab/b:eth2").contains("wired")
        );
    }
}
