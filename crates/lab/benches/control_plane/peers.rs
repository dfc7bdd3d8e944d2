//! The peers the bench invents: their leases (tweed's own record type) and
//! the three kernel entries each must produce on the agent's node.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::json;
use tweed_netlink::MacAddr;
use tweedd::lease::{Lease, LeaseAttrs, LeaseKey};

#[derive(Clone)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub public: Ipv4Addr,
    pub mac: MacAddr,
}

impl Peer {
    pub fn lease(&self, i: usize) -> Lease {
        Lease {
            key: LeaseKey {
                ipv4: Some(self.subnet),
                ipv6: None,
            },
            attrs: LeaseAttrs {
                public_ip: Some(self.public),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: json!({"VNI": 1, "VtepMAC": self.mac.to_string()}).into(),
                backend_v6_data: tweedd::lease::BackendData::null(),
                node_name: format!("peer{i}"),
                segment_macs: Default::default(),
                wire_ends: Default::default(),
            },
            expires: None,
        }
    }
}

/// N distinct peers: subnets 10.128.1.0/24, 10.128.2.0/24, ... (skipping
/// the agent's own), public addresses from 198.18.16.0 on (outside the
/// lab's 198.18.0.0/24; nothing is ever sent to them), distinct MACs.
pub fn peers(n: usize, own: Ipv4Net) -> Vec<Peer> {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    let mut out = Vec::with_capacity(n);
    let mut k = 1u32;
    while out.len() < n {
        let subnet = Ipv4Net::new(Ipv4Addr::from(base + (k << 8)), 24).expect("/24");
        k += 1;
        if subnet == own {
            continue;
        }
        let i = out.len() as u32;
        out.push(Peer {
            subnet,
            public: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 16, 0)) + i),
            mac: MacAddr([0x02, 0xcb, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
        });
    }
    out
}
