//! Wires: point-to-point links between one pod interface and another — the
//! virtual cables network labs are built from.
//!
//! A pod declares its wires in the annotation `tweed.io/wires`
//! (`eth1=r2:eth1, eth2=lab/r3:eth1`); both ends must declare each other,
//! as both ends of a cable exist. The plugin checks the declaration and
//! records it with the pod's namespace ([`record`]); tweedd reads the
//! records, publishes the ends in its lease, and cables every wire whose
//! two ends exist: a veth pair straight between the two pods on one node,
//! a VXLAN device of the wire's own VNI in each pod across nodes. It
//! reports what it did in [`status`], which `tweedctl status` prints.

pub mod record;
pub mod spec;
pub mod status;

pub use record::{WireEnd, WireRecord};
pub use spec::{Endpoint, SpecError, parse_annotation};
pub use status::{WireState, WireStatus};

/// The pod annotation that declares a pod's wires.
pub const ANNOTATION: &str = "tweed.io/wires";

/// Where the plugin records wire ends and tweedd reports on them.
pub const DEFAULT_DIR: &str = "/run/tweed/wires";

/// The start of the VNIs wires take (the upper half of the 24-bit space,
/// away from the pod network's and the segments' usual small numbers).
pub const VNI_BASE: u32 = 0x80_0000;
const VNI_SPAN: u32 = 0x7f_ffff;

/// The wire between two endpoints, named the same from either end.
pub fn wire_name(a: &Endpoint, b: &Endpoint) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{lo}--{hi}")
}

/// The wire's VNI: a hash of its name into `VNI_BASE..=0xfffffe`, so both
/// nodes derive the same number without agreeing on anything. Two wires
/// between the same pair of nodes that hash alike are reported (the kernel
/// refuses the second device) rather than joined.
pub fn wire_vni(a: &Endpoint, b: &Endpoint) -> u32 {
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in wire_name(a, b).bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    VNI_BASE + (h % u64::from(VNI_SPAN)) as u32
}

/// The alias tweedd gives a wire end it made, so it knows its own devices
/// (and what they were made for) among a pod's interfaces.
pub fn end_alias(vni: u32, how: &str) -> String {
    format!("{ALIAS_PREFIX}{vni} {how}")
}

/// What every wire end's alias starts with.
pub const ALIAS_PREFIX: &str = "tweed-wire vni=";

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn both_ends_name_the_same_wire_and_vni() {
        let (a, b) = (ep("lab/r1:eth1"), ep("lab/r2:eth3"));
        assert_eq!(wire_name(&a, &b), wire_name(&b, &a));
        assert_eq!(wire_vni(&a, &b), wire_vni(&b, &a));
        assert_eq!(wire_name(&a, &b), "lab/r1:eth1--lab/r2:eth3");
        let v = wire_vni(&a, &b);
        assert!((VNI_BASE..=0xff_fffe).contains(&v), "{v}");
        assert_ne!(v, wire_vni(&a, &ep("lab/r2:eth2")));
    }
}
