//! Names tweed gives to host-side objects.
//!
//! The host end of a pod's veth gets a name derived from the attachment
//! (network, container, interface), so DEL finds it in one lookup even when
//! the pod's namespace is already gone. Its alias spells the attachment out
//! in full, so GC can tell which attachment a stray device belonged to.

/// Prefix of every host-side veth tweed creates.
pub const HOST_VETH_PREFIX: &str = "tw";

/// Prefix of the alias tweed puts on the host-side veth.
pub const ALIAS_PREFIX: &str = tweed_node::names::HOST_VETH_ALIAS_PREFIX;

/// Prefix of the alias of a host veth whose DEL is under way: its
/// detached deletion may still be running when the same attachment is
/// ADDed again, and ADD may then remove it at once.
pub const DELETING_PREFIX: &str = tweed_node::names::DELETING_ALIAS_PREFIX;

/// Prefix of the name a guest's tap has between its creation and its
/// labelling (see [`guest_tap_pending`]).
pub const GUEST_TAP_PENDING_PREFIX: &str = "twg";

/// The name a guest attachment's tap is created under, in the pod
/// namespace: `twg` + 12 hex digits derived from the attachment. The
/// kernel takes no alias when a tap is made (that is an ioctl), so a
/// process killed before labelling it would leave a tap nobody could
/// tell was tweed's; under this name it is the attachment's by
/// construction, and DEL removes it whatever its label. The tap gets its
/// final name once labelled.
pub fn guest_tap_pending(container_id: &str, ifname: &str) -> String {
    let h = fnv1a64(&[container_id.as_bytes(), ifname.as_bytes()]);
    format!("{GUEST_TAP_PENDING_PREFIX}{:012x}", h & 0xffff_ffff_ffff)
}

/// The host-side veth name for an attachment: `tw` + 12 hex digits.
pub fn host_veth(network: &str, container_id: &str, ifname: &str) -> String {
    let h = fnv1a64(&[
        network.as_bytes(),
        container_id.as_bytes(),
        ifname.as_bytes(),
    ]);
    format!("{HOST_VETH_PREFIX}{:012x}", h & 0xffff_ffff_ffff)
}

/// `tweed/<network>/<containerID>/<ifname>`. None of the three may contain
/// `/` (CNI forbids it in IDs and interface names; the network name is a
/// directory name for IPAM), so the alias parses back unambiguously.
pub fn alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{ALIAS_PREFIX}{network}/{container_id}/{ifname}")
}

/// The alias a host veth gets when DEL hands it to the detached deleter.
pub fn deleting_alias(network: &str, container_id: &str, ifname: &str) -> String {
    format!("{DELETING_PREFIX}{network}/{container_id}/{ifname}")
}

/// True for the alias DEL gives a host veth of `network` on its way out
/// ([`deleting_alias`]).
pub fn is_deleting_alias(alias: &str, network: &str) -> bool {
    alias
        .strip_prefix(DELETING_PREFIX)
        .and_then(|rest| rest.strip_prefix(network))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// The (container ID, ifname) of a tweed alias on `network`, if it is one.
pub fn parse_alias<'a>(alias: &'a str, network: &str) -> Option<(&'a str, &'a str)> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    let rest = rest.strip_prefix(network)?.strip_prefix('/')?;
    let (id, ifname) = rest.split_once('/')?;
    (!id.is_empty() && !ifname.is_empty() && !ifname.contains('/')).then_some((id, ifname))
}

/// FNV-1a: tiny, stable across releases and platforms, and good enough to
/// spread names; collisions are caught by the kernel (EEXIST) anyway.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator that cannot occur in any part keeps ("ab","c")
            // and ("a","bc") apart.
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_fit_the_kernel_limit_and_are_stable() {
        let n = host_veth(
            "tweed",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "eth0",
        );
        assert_eq!(n.len(), 14);
        assert!(n.starts_with("tw"));
        assert_eq!(
            n,
            host_veth(
                "tweed",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "eth0"
            )
        );
        assert_ne!(
            n,
            host_veth(
                "tweed",
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "eth1"
            )
        );
        assert_ne!(host_veth("a", "bc", "x"), host_veth("ab", "c", "x"));
    }

    #[test]
    fn aliases_round_trip_only_for_their_network() {
        let a = alias("podnet", "ctr-1", "eth0");
        assert_eq!(parse_alias(&a, "podnet"), Some(("ctr-1", "eth0")));
        assert_eq!(parse_alias(&a, "pod"), None);
        assert_eq!(parse_alias(&a, "other"), None);
        assert_eq!(parse_alias("tweed/podnet/", "podnet"), None);
        assert_eq!(parse_alias("something else", "podnet"), None);
        assert_eq!(
            parse_alias(&deleting_alias("podnet", "ctr-1", "eth0"), "podnet"),
            None
        );
        assert!(is_deleting_alias(
            &deleting_alias("podnet", "ctr-1", "eth0"),
            "podnet"
        ));
        assert!(!is_deleting_alias(
            &deleting_alias("podnet", "ctr-1", "eth0"),
            "pod"
        ));
        assert!(!is_deleting_alias(&a, "podnet"));
    }
}
