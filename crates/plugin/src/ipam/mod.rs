//! Where a pod's addresses come from: tweed's built-in IPAM (host-local's
//! store format, ranges from the config or from the node lease), or any
//! other IPAM plugin, run as a delegate the way the CNI spec describes.

pub mod builtin;
pub mod delegate;
pub mod segment_block;

use serde_json::Value;
use tweed_cni::error::CniError;
use tweed_ipam::IpamConf;

/// The IPAM type tweed implements itself.
pub const BUILTIN_TYPE: &str = "tweed";

/// How this network gets addresses.
#[derive(Debug, Clone)]
pub enum IpamPlan {
    /// tweed's own IPAM. Without `ranges`/`subnet` the ranges come from the
    /// node lease file.
    Builtin(IpamConf),
    /// Another plugin (`host-local`, `dhcp`, `static`, ...), found on
    /// `CNI_PATH`.
    Delegate(String),
    /// A layer-2 segment's: from this node's block of the segment's
    /// `Subnet` when tweedd wrote one, else no addresses at all
    /// ([`segment_block`]). Reservations are kept in `data_dir`
    /// (`ipam.dataDir`, host-local's default).
    SegmentBlock { data_dir: std::path::PathBuf },
}

impl IpamPlan {
    /// Reads the `ipam` section; absent or `"type": "tweed"` is built in.
    pub fn from_config(ipam: Option<&Value>) -> Result<IpamPlan, CniError> {
        let Some(value) = ipam else {
            return Ok(IpamPlan::Builtin(IpamConf::default()));
        };
        if !value.is_object() {
            return Err(CniError::invalid_config("ipam", "must be an object"));
        }
        match value.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == BUILTIN_TYPE => {}
            Some(Value::String(t)) if t.is_empty() => {
                return Err(CniError::invalid_config("ipam.type", "must not be empty"));
            }
            Some(Value::String(t)) => {
                if t.contains('/') {
                    return Err(CniError::invalid_config(
                        "ipam.type",
                        format!("{t:?} is not a plugin name"),
                    ));
                }
                return Ok(IpamPlan::Delegate(t.clone()));
            }
            Some(_) => return Err(CniError::invalid_config("ipam.type", "must be a string")),
        }
        let conf: IpamConf = tweed_cni::config::from_value_at(value, "ipam")?;
        Ok(IpamPlan::Builtin(conf))
    }

    /// True when the built-in IPAM must take its ranges from the lease.
    pub fn needs_lease(&self) -> bool {
        matches!(self, IpamPlan::Builtin(c) if c.ranges.is_none() && c.subnet.is_none())
    }
}
