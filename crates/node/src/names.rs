//! The names by which other programs — tweedctl, the plugin, a restarted
//! agent, an operator's `ip` and `nft` — recognise what tweedd made on a
//! node. Changing one strands the state an older version left behind.

/// Routes tweedd installs carry this protocol number (`ip route show proto
/// 77`), so a restarted agent finds exactly the routes it owns and removes
/// those of peers that are gone.
pub const ROUTE_PROTOCOL: u8 = 77;

/// The nftables table (family `inet`) that holds all of tweedd's rules:
/// masquerade and forward. Removing tweed's rules is deleting it.
pub const MASQ_TABLE: &str = "tweed";

/// tweed's VXLAN device is `tweed.<VNI>` ([`vxlan_device`]).
pub const VXLAN_DEVICE_PREFIX: &str = "tweed";
/// flannel's is `flannel.<VNI>`, adopted under `tweedd --flannel-compat`.
pub const FLANNEL_VXLAN_DEVICE_PREFIX: &str = "flannel";

/// The pod network's VXLAN device: `<prefix>.<VNI>`.
pub fn vxlan_device(prefix: &str, vni: u32) -> String {
    format!("{prefix}.{vni}")
}

/// The Geneve backend's one device.
pub const GENEVE_DEVICE: &str = "tweed.geneve";
/// The WireGuard backend's device (IPv4 underlay, or the only one).
pub const WIREGUARD_DEVICE: &str = "tweed-wg";
/// The WireGuard backend's second device, for the IPv6 underlay.
pub const WIREGUARD_DEVICE_V6: &str = "tweed-wg-v6";

/// A layer-2 segment's node bridge is `tws-<name>`.
pub const SEGMENT_BRIDGE_PREFIX: &str = "tws-";
/// A layer-2 segment's VXLAN device is `twx.<VNI>`.
pub const SEGMENT_VXLAN_PREFIX: &str = "twx.";

/// The plugin's node bridge unless its conflist names another.
pub const DEFAULT_BRIDGE: &str = "tweed0";
/// Prefix of the alias the plugin puts on a pod's host-side veth.
pub const HOST_VETH_ALIAS_PREFIX: &str = "tweed/";
/// Prefix of that alias while the veth's DEL is under way.
pub const DELETING_ALIAS_PREFIX: &str = "tweed-deleting/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(vxlan_device(VXLAN_DEVICE_PREFIX, 1), "tweed.1");
        assert_eq!(vxlan_device(FLANNEL_VXLAN_DEVICE_PREFIX, 1), "flannel.1");
    }
}
