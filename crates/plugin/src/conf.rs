//! The network configuration tweed reads from stdin: the generic CNI part
//! (tweed_cni) plus tweed's own fields.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use tweed_cni::config::{Loaded, NetConf};
use tweed_cni::env::Command;
use tweed_cni::env::validate_ifname;
use tweed_cni::error::CniError;
use tweed_cni::version::CniVersion;

use crate::calllog::DEFAULT_LOG_FILE;
use crate::guest::request::GuestSection;
use crate::ipam::IpamPlan;
use crate::lease::DEFAULT_SUBNET_FILE;

pub const DEFAULT_BRIDGE: &str = "tweed0";
/// Used when neither the config nor the node lease gives an MTU.
pub const DEFAULT_MTU: u32 = 1500;

/// tweed's own fields, as users write them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TweedFields {
    bridge: Option<String>,
    mtu: Option<u32>,
    hairpin_mode: Option<bool>,
    subnet_file: Option<PathBuf>,
    log_file: Option<PathBuf>,
    is_default_gateway: Option<bool>,
    guest: Option<GuestSection>,
    /// A layer-2 segment of tweedd's (`Segments` in net-conf.json) to
    /// attach to instead of the routed pod network.
    segment: Option<String>,
    /// Where pods' wire records go for tweedd (`--wire-dir`).
    wire_dir: Option<PathBuf>,
    /// Where tweedd writes segments' address blocks (`--segment-dir`).
    segment_dir: Option<PathBuf>,
}

/// Everything a command needs from the configuration.
#[derive(Debug)]
pub struct Conf {
    pub net: NetConf,
    pub version: CniVersion,
    pub bridge: String,
    /// The configured MTU; `None` means "the lease's, else 1500".
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub subnet_file: PathBuf,
    pub log_file: PathBuf,
    pub is_default_gateway: bool,
    pub ipam: IpamPlan,
    /// The layer-2 segment this network attaches to (its bridge is
    /// [`Conf::bridge`], made by tweedd); `None` for the pod network.
    pub segment: Option<String>,
    /// The operator's guest defaults (`guest`); see `guest::request`.
    pub guest: Option<GuestSection>,
    /// Where the pod's wires are recorded for tweedd.
    pub wire_dir: PathBuf,
    /// Where tweedd writes each addressed segment's block.
    pub segment_dir: PathBuf,
    /// The configuration exactly as received (handed to delegates).
    pub raw: Value,
}

impl Conf {
    /// Parses stdin for `command`: the generic part is checked by
    /// tweed_cni (codes 6, 7 and 1), then tweed's own fields (code 7).
    pub fn parse(stdin: &[u8], command: Command) -> Result<Conf, CniError> {
        let Loaded {
            raw,
            conf: net,
            version,
        } = tweed_cni::config::load(stdin, command)?;
        let fields: TweedFields = tweed_cni::config::from_value(&raw, "network config")?;
        if let Some(name) = &fields.segment {
            tweed_segment::check_name(name)
                .map_err(|why| CniError::invalid_config("segment", format!("{name:?} {why}")))?;
            if fields.bridge.is_some() {
                return Err(CniError::invalid_config(
                    "bridge",
                    "cannot be combined with segment: a segment's bridge is tws-<name>, made by tweedd",
                ));
            }
        }
        let bridge = match &fields.segment {
            Some(name) => tweed_segment::bridge_name(name),
            None => fields.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
        };
        validate_ifname(&bridge).map_err(|why| CniError::invalid_config("bridge", why))?;
        if let Some(mtu) = fields.mtu
            && !(68..=65535).contains(&mtu)
        {
            return Err(CniError::invalid_config(
                "mtu",
                format!("{mtu} is outside 68..65535"),
            ));
        }
        let ipam = match (&fields.segment, IpamPlan::from_config(net.ipam.as_ref())?) {
            // A segment has no node lease: without ranges of its own its
            // addresses come from its Subnet (tweedd's block file), and
            // without a Subnet there are none (pure layer 2).
            (Some(_), IpamPlan::Builtin(c)) if c.ranges.is_none() && c.subnet.is_none() => {
                IpamPlan::SegmentBlock {
                    data_dir: crate::ipam::builtin::data_dir(&c),
                }
            }
            (_, plan) => plan,
        };
        Ok(Conf {
            version,
            bridge,
            mtu: fields.mtu,
            hairpin: fields.hairpin_mode.unwrap_or(true),
            subnet_file: fields
                .subnet_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SUBNET_FILE)),
            log_file: fields
                .log_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_FILE)),
            // A segment has no gateway of tweed's: routes only as IPAM says.
            is_default_gateway: fields
                .is_default_gateway
                .unwrap_or(fields.segment.is_none()),
            ipam,
            segment: fields.segment,
            guest: fields.guest,
            wire_dir: fields
                .wire_dir
                .unwrap_or_else(|| PathBuf::from(tweed_wire::DEFAULT_DIR)),
            segment_dir: fields
                .segment_dir
                .unwrap_or_else(|| PathBuf::from(tweed_segment::block::DEFAULT_DIR)),
            net,
            raw,
        })
    }

    /// The network name (required by every per-network command).
    pub fn name(&self) -> &str {
        &self.net.name
    }
}

/// The log file named in a config that may not parse as a whole, so even a
/// rejected call is logged where the operator asked.
pub fn log_file_hint(raw: &Value) -> Option<PathBuf> {
    raw.get("logFile")?.as_str().map(PathBuf::from)
}
