//! STATUS: can this plugin serve ADD right now?

use tweed_cni::error::CniError;

use super::Call;
use crate::ipam::{IpamPlan, builtin, delegate, segment_block};
use tweed_node::SubnetEnv;

pub fn run(call: &mut Call) -> Result<(), CniError> {
    let conf = call.conf;
    if conf.wire.is_some() {
        // ADD only writes a record; tweedd cables when it can.
        return Ok(());
    }
    match &conf.ipam {
        IpamPlan::Builtin(ipam) => {
            if conf.ipam.needs_lease() {
                SubnetEnv::read(&conf.subnet_file)
                    .map_err(|e| CniError::status_unavailable(e.to_string()))?;
            }
            builtin::status(&builtin::data_dir(ipam), conf.name())
                .map_err(|e| CniError::status_unavailable(format!("IPAM store unusable: {e}")))?;
        }
        IpamPlan::Delegate(plugin) => {
            // Only plugins that speak 1.1.0 know STATUS (libcni asks
            // VERSION first, and so do we).
            let version = delegate::run(
                plugin,
                &call.env.path,
                "VERSION",
                br#"{"cniVersion":"1.1.0"}"#,
            )
            .map_err(|e| CniError::status_unavailable(e.msg.clone()))?;
            let speaks_status = version
                .as_ref()
                .and_then(|v| v["supportedVersions"].as_array())
                .is_some_and(|vs| vs.iter().any(|v| v == "1.1.0"));
            if speaks_status {
                delegate::run(plugin, &call.env.path, "STATUS", call.stdin)?;
            }
        }
        IpamPlan::SegmentBlock { data_dir } => {
            // A segment whose block tweedd could not claim cannot serve
            // ADD; its reason is the status.
            let segment = conf.segment.as_deref().expect("a segment's plan");
            segment_block::spec(&conf.segment_dir, segment, data_dir)
                .map_err(|e| CniError::status_unavailable(e.msg))?;
        }
    }
    // A segment network can serve ADD once tweedd has made its bridge.
    if let Some(segment) = &conf.segment {
        let mut nl = tweed_netlink::Netlink::new()
            .map_err(|e| CniError::status_unavailable(e.to_string()))?;
        crate::dataplane::bridge::segment(&mut nl, segment, conf.mtu)
            .map_err(|e| CniError::status_unavailable(e.msg))?;
    }
    Ok(())
}
