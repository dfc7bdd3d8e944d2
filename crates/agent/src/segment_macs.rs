//! The MACs behind this node's end of each layer-2 segment: whatever the
//! segment bridge learnt on its local ports (pods, guests, anything cabled
//! to it). The agent publishes them in its lease record so other nodes
//! program unicast FDB entries towards this node; frames for MACs nobody
//! published yet are flooded (head-end replication), which is correct,
//! only less economical.

use std::collections::BTreeSet;

use tweed_netlink::{Netlink, NetlinkError};
use tweed_segment::{Segment, bridge_name, vxlan_name};

use crate::lease::SegmentMacs;

/// Reads the learnt (not permanent) unicast MACs on the local ports of each
/// segment's bridge.
pub fn local(nl: &mut Netlink, segments: &[Segment]) -> Result<SegmentMacs, NetlinkError> {
    let mut out = SegmentMacs::new();
    if segments.is_empty() {
        return Ok(out);
    }
    let links = nl.links()?;
    for s in segments {
        let Some(bridge) = links.iter().find(|l| l.name == bridge_name(&s.name)) else {
            continue;
        };
        let tunnel = vxlan_name(s.vni);
        let mut macs = BTreeSet::new();
        for port in links
            .iter()
            .filter(|l| l.master == Some(bridge.index) && l.name != tunnel)
        {
            for e in nl.fdb(port.index)? {
                // Permanent entries are the ports' and bridge's own
                // addresses; learnt ones are the stations behind a port.
                if e.index == port.index
                    && e.master.is_none_or(|m| m == bridge.index)
                    && !e.permanent
                    && !e.mac.is_zero()
                    && !e.mac.is_multicast()
                {
                    macs.insert(e.mac.to_string());
                }
            }
        }
        if !macs.is_empty() {
            out.insert(s.name.clone(), macs.into_iter().collect());
        }
    }
    Ok(out)
}
