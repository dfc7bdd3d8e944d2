//! WireGuard devices over generic netlink (the kernel's `wireguard`
//! family): the device's private key and listen port, and its peers, each
//! with a public key, an optional pre-shared key, an endpoint, a keepalive
//! interval and the prefixes it may send from and is sent (`AllowedIPs`).
//!
//! The device itself is created over rtnetlink
//! ([`LinkKind::Wireguard`](crate::LinkKind::Wireguard)); this module
//! speaks only to the `wireguard` family, whose id the kernel assigns at
//! boot and [`Wireguard::new`] looks up.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ipnet::IpNet;
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use netlink_sys::protocols::NETLINK_GENERIC;

use crate::error::{NetlinkError, Result};
use crate::socket::Channel;

/// The generic netlink family of WireGuard devices.
const FAMILY: &str = "wireguard";

/// Peers per set request: a device with thousands of peers is configured
/// in several messages, each well under the socket's buffer.
const PEERS_PER_MESSAGE: usize = 64;

/// A Curve25519 key (private, public or pre-shared: all 32 bytes), shown
/// and read in base64 as `wg(8)` does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

/// Keys never go to logs by accident: `{:?}` shows only the first bytes.
impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({}…)", &self.to_string()[..8])
    }
}

/// A text that is not a base64 WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WireGuard key (base64 of 32 bytes, 44 characters): {0}")]
pub struct InvalidKey(String);

impl FromStr for WgKey {
    type Err = InvalidKey;

    fn from_str(s: &str) -> std::result::Result<WgKey, InvalidKey> {
        let bytes = BASE64
            .decode(s.trim())
            .map_err(|e| InvalidKey(e.to_string()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| InvalidKey(format!("{} bytes", b.len())))?;
        Ok(WgKey(key))
    }
}

/// A peer of a WireGuard device, as set or as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub public_key: WgKey,
    pub preshared_key: Option<WgKey>,
    pub endpoint: Option<SocketAddr>,
    /// Seconds between keepalives; 0 for none.
    pub keepalive: u16,
    pub allowed_ips: Vec<IpNet>,
}

/// What the kernel reports about a WireGuard device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WgDevice {
    pub private_key: Option<WgKey>,
    pub public_key: Option<WgKey>,
    pub listen_port: u16,
    pub peers: Vec<WgPeer>,
}

/// A generic netlink client for WireGuard devices, bound to the network
/// namespace it was opened in.
pub struct Wireguard {
    channel: Channel,
    family: u16,
}

impl Wireguard {
    /// Opens a generic netlink socket and looks the `wireguard` family up.
    /// A kernel without WireGuard has no such family: the error says so.
    pub fn new() -> Result<Wireguard> {
        let mut channel = Channel::open(NETLINK_GENERIC)?;
        let request = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY.to_string())],
        });
        let reply = channel.get(
            || format!("look up the generic netlink family {FAMILY:?}"),
            request,
        )?;
        let family = reply
            .into_iter()
            .flat_map(|m| m.payload.nlas)
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(id),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NotFound {
                what: format!("generic netlink family {FAMILY:?} (is CONFIG_WIREGUARD built?)"),
            })?;
        Ok(Wireguard { channel, family })
    }

    fn message(
        &self,
        cmd: WireguardCmd,
        attributes: Vec<WireguardAttribute>,
    ) -> GenlMessage<WireguardMessage> {
        let mut m = GenlMessage::from_payload(WireguardMessage { cmd, attributes });
        m.set_resolved_family_id(self.family);
        m
    }

    /// The device with interface index `index`: keys, port and peers. The
    /// kernel splits a device with many peers over several messages; they
    /// are joined here.
    pub fn device(&mut self, index: u32) -> Result<WgDevice> {
        let request = self.message(
            WireguardCmd::GetDevice,
            vec![WireguardAttribute::IfIndex(index)],
        );
        let replies = self
            .channel
            .dump(|| format!("read WireGuard device #{index}"), request)?;
        let mut device = WgDevice::default();
        for reply in replies {
            for attr in reply.payload.attributes {
                match attr {
                    WireguardAttribute::PrivateKey(k) => device.private_key = Some(WgKey(k)),
                    WireguardAttribute::PublicKey(k) => device.public_key = Some(WgKey(k)),
                    WireguardAttribute::ListenPort(p) => device.listen_port = p,
                    WireguardAttribute::Peers(peers) => {
                        for peer in peers {
                            merge_peer(&mut device.peers, parse_peer(&peer));
                        }
                    }
                    _ => {}
                }
            }
        }
        // A device without a private key reports an all-zero one.
        device.private_key = device.private_key.filter(|k| k.0 != [0; 32]);
        device.public_key = device.public_key.filter(|k| k.0 != [0; 32]);
        Ok(device)
    }

    /// Sets the device's private key and listen port.
    pub fn set_identity(
        &mut self,
        index: u32,
        private_key: &WgKey,
        listen_port: u16,
    ) -> Result<()> {
        let request = self.message(
            WireguardCmd::SetDevice,
            vec![
                WireguardAttribute::IfIndex(index),
                WireguardAttribute::PrivateKey(private_key.0),
                WireguardAttribute::ListenPort(listen_port),
            ],
        );
        self.channel.execute(
            || {
                format!(
                    "set the private key and listen port {listen_port} of WireGuard device #{index}"
                )
            },
            request,
            0,
        )
    }

    /// Adds or updates `peers`: each one's allowed IPs are replaced by the
    /// given ones, and its endpoint, keepalive and pre-shared key set (no
    /// pre-shared key: all zeros, which the kernel takes as none).
    pub fn set_peers(&mut self, index: u32, peers: &[WgPeer]) -> Result<()> {
        self.send_peers(index, "set", peers.iter().map(peer_attributes).collect())
    }

    /// Removes the peers with these public keys (absent ones are no error).
    pub fn remove_peers(&mut self, index: u32, keys: &[WgKey]) -> Result<()> {
        let list = keys
            .iter()
            .map(|k| {
                WireguardPeer(vec![
                    WireguardPeerAttribute::PublicKey(k.0),
                    WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
                ])
            })
            .collect();
        self.send_peers(index, "remove", list)
    }

    /// Sends `peers` to the device in messages of [`PEERS_PER_MESSAGE`];
    /// `verb` says what they do, for errors.
    fn send_peers(&mut self, index: u32, verb: &str, peers: Vec<WireguardPeer>) -> Result<()> {
        for chunk in peers.chunks(PEERS_PER_MESSAGE) {
            let request = self.message(
                WireguardCmd::SetDevice,
                vec![
                    WireguardAttribute::IfIndex(index),
                    WireguardAttribute::Peers(chunk.to_vec()),
                ],
            );
            self.channel.execute(
                || {
                    format!(
                        "{verb} {} peer(s) of WireGuard device #{index}",
                        chunk.len()
                    )
                },
                request,
                0,
            )?;
        }
        Ok(())
    }
}

/// The attributes that set `peer` completely.
fn peer_attributes(peer: &WgPeer) -> WireguardPeer {
    let mut attrs = vec![
        WireguardPeerAttribute::PublicKey(peer.public_key.0),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
        WireguardPeerAttribute::PresharedKey(peer.preshared_key.map(|k| k.0).unwrap_or([0; 32])),
        WireguardPeerAttribute::PersistentKeepalive(peer.keepalive),
        WireguardPeerAttribute::AllowedIps(peer.allowed_ips.iter().map(allowed_ip).collect()),
    ];
    if let Some(endpoint) = peer.endpoint {
        attrs.push(WireguardPeerAttribute::Endpoint(endpoint));
    }
    WireguardPeer(attrs)
}

fn allowed_ip(net: &IpNet) -> WireguardAllowedIp {
    let family = match net {
        IpNet::V4(_) => WireguardAddressFamily::Ipv4,
        IpNet::V6(_) => WireguardAddressFamily::Ipv6,
    };
    WireguardAllowedIp(vec![
        WireguardAllowedIpAttr::Family(family),
        WireguardAllowedIpAttr::IpAddr(net.network()),
        WireguardAllowedIpAttr::Cidr(net.prefix_len()),
    ])
}

fn parse_peer(peer: &WireguardPeer) -> WgPeer {
    let mut out = WgPeer {
        public_key: WgKey([0; 32]),
        preshared_key: None,
        endpoint: None,
        keepalive: 0,
        allowed_ips: Vec::new(),
    };
    for attr in peer.iter() {
        match attr {
            WireguardPeerAttribute::PublicKey(k) => out.public_key = WgKey(*k),
            WireguardPeerAttribute::PresharedKey(k) if *k != [0; 32] => {
                out.preshared_key = Some(WgKey(*k))
            }
            WireguardPeerAttribute::Endpoint(e) => out.endpoint = Some(*e),
            WireguardPeerAttribute::PersistentKeepalive(k) => out.keepalive = *k,
            WireguardPeerAttribute::AllowedIps(ips) => out
                .allowed_ips
                .extend(ips.iter().filter_map(parse_allowed_ip)),
            _ => {}
        }
    }
    out
}

fn parse_allowed_ip(ip: &WireguardAllowedIp) -> Option<IpNet> {
    let mut addr: Option<IpAddr> = None;
    let mut cidr = None;
    for attr in ip.0.iter() {
        match attr {
            WireguardAllowedIpAttr::IpAddr(a) => addr = Some(*a),
            WireguardAllowedIpAttr::Cidr(c) => cidr = Some(*c),
            _ => {}
        }
    }
    IpNet::new(addr?, cidr?).ok()
}

/// A peer continued from the previous message (the kernel repeats its
/// public key) adds its allowed IPs to the one already read.
fn merge_peer(peers: &mut Vec<WgPeer>, peer: WgPeer) {
    match peers.iter_mut().find(|p| p.public_key == peer.public_key) {
        Some(p) => p.allowed_ips.extend(peer.allowed_ips),
        None => peers.push(peer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_and_print_as_base64() {
        let text = "YLvHZ1gwN2kaQ7jkmGl6EYf5IvTPrYDtJ1yg0WJDLWs=";
        let key: WgKey = text.parse().unwrap();
        assert_eq!(key.to_string(), text);
        assert_eq!(format!("{key:?}"), "WgKey(YLvHZ1gw…)");
        assert!("short".parse::<WgKey>().is_err());
        let err = "AAAA".parse::<WgKey>().unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
    }

    #[test]
    fn a_peer_round_trips_through_its_attributes() {
        let peer = WgPeer {
            public_key: WgKey([7; 32]),
            preshared_key: Some(WgKey([9; 32])),
            endpoint: Some("198.18.0.2:51820".parse().unwrap()),
            keepalive: 25,
            allowed_ips: vec![
                "10.244.2.0/24".parse().unwrap(),
                "fd00:10:244:2::/64".parse().unwrap(),
            ],
        };
        assert_eq!(parse_peer(&peer_attributes(&peer)), peer);
    }
}
