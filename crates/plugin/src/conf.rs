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

use crate::calllog::{DEFAULT_LOG_FILE, LogFile};
use crate::guest::request::GuestSection;
use crate::ipam::IpamPlan;
use tweed_node::subnet_env::DEFAULT_PATH as DEFAULT_SUBNET_FILE;

pub const DEFAULT_BRIDGE: &str = tweed_node::names::DEFAULT_BRIDGE;
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
    log_options: Option<LogOptions>,
    is_default_gateway: Option<bool>,
    guest: Option<GuestSection>,
    /// A layer-2 segment of tweedd's (`Segments` in net-conf.json) to
    /// attach to instead of the routed pod network.
    segment: Option<String>,
    /// The two ends of a wire this network is (`["r1:eth2", "r3:eth1"]`),
    /// instead of the routed pod network; see `wire_network`.
    wire: Option<Value>,
    /// Where pods' wire records go for tweedd (`--wire-dir`).
    wire_dir: Option<PathBuf>,
    /// Where tweedd writes segments' address blocks (`--segment-dir`).
    segment_dir: Option<PathBuf>,
}

/// Where the call log goes and how much of it is kept (the field names
/// follow Multus's `logOptions`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogFields {
    log_file: Option<PathBuf>,
    log_options: Option<LogOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogOptions {
    /// MiB at which the log is rotated; 0 never rotates.
    max_size: Option<u64>,
    /// Rotated files kept.
    max_backups: Option<u32>,
}

/// Caps that keep `maxSize` in bytes far from overflowing and the number of
/// renames per rotation small.
const MAX_LOG_SIZE_MIB: u64 = 1 << 20;
const MAX_LOG_BACKUPS: u32 = 100;

impl LogFields {
    fn log_file(self) -> Result<LogFile, CniError> {
        let mut log = LogFile::at(
            self.log_file
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOG_FILE)),
        );
        let Some(options) = self.log_options else {
            return Ok(log);
        };
        if let Some(mib) = options.max_size {
            if mib > MAX_LOG_SIZE_MIB {
                return Err(CniError::invalid_config(
                    "logOptions.maxSize",
                    format!("{mib} MiB is over the limit of {MAX_LOG_SIZE_MIB} MiB"),
                ));
            }
            log.max_bytes = mib * 1024 * 1024;
        }
        if let Some(n) = options.max_backups {
            if n > MAX_LOG_BACKUPS {
                return Err(CniError::invalid_config(
                    "logOptions.maxBackups",
                    format!("{n} is over the limit of {MAX_LOG_BACKUPS}"),
                ));
            }
            log.backups = n;
        }
        Ok(log)
    }
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
    pub log: LogFile,
    pub is_default_gateway: bool,
    pub ipam: IpamPlan,
    /// The layer-2 segment this network attaches to (its bridge is
    /// [`Conf::bridge`], made by tweedd); `None` for the pod network.
    pub segment: Option<String>,
    /// The operator's guest defaults (`guest`); see `guest::request`.
    pub guest: Option<GuestSection>,
    /// The wire this network is: its two ends as written (a pod name
    /// without a namespace is in the attaching pod's); `None` for every
    /// other network.
    pub wire: Option<[String; 2]>,
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
        let mut fields: TweedFields = tweed_cni::config::from_value(&raw, "network config")?;
        let log = LogFields {
            log_file: fields.log_file.take(),
            log_options: fields.log_options.take(),
        }
        .log_file()?;
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
        let wire = match &fields.wire {
            Some(v) => Some(crate::wire_network::parse_conf(
                v,
                &fields_given(&fields, net.ipam.is_some()),
            )?),
            None => None,
        };
        let bridge = match &fields.segment {
            Some(name) => tweed_segment::bridge_name(name),
            None => fields.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string()),
        };
        validate_ifname(&bridge)
            .map_err(|why| CniError::invalid_config("bridge", why.to_string()))?;
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
            log,
            // A segment has no gateway of tweed's: routes only as IPAM says.
            is_default_gateway: fields
                .is_default_gateway
                .unwrap_or(fields.segment.is_none()),
            ipam,
            segment: fields.segment,
            guest: fields.guest,
            wire,
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

/// The fields given beside `wire`, which a wire cannot honour: it has no
/// bridge, addresses or guest, and its MTU is `Wires.MTU` on every node.
fn fields_given(fields: &TweedFields, ipam: bool) -> Vec<&'static str> {
    [
        ("segment", fields.segment.is_some()),
        ("bridge", fields.bridge.is_some()),
        ("mtu", fields.mtu.is_some()),
        ("ipam", ipam),
        ("guest", fields.guest.is_some()),
        ("isDefaultGateway", fields.is_default_gateway.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect()
}

/// The log named in a config that may not parse as a whole, so even a
/// rejected call is logged where (and as) the operator asked.
pub fn log_file_hint(raw: &Value) -> Option<LogFile> {
    serde_json::from_value::<LogFields>(raw.clone())
        .ok()?
        .log_file()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tweed_cni::error::code;

    fn conf(extra: Value) -> Result<Conf, CniError> {
        let mut v = json!({"cniVersion": "1.0.0", "name": "n", "type": "tweed"});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Conf::parse(v.to_string().as_bytes(), Command::Add)
    }

    #[test]
    fn the_call_log_is_capped_by_default() {
        let log = conf(json!({})).unwrap().log;
        assert_eq!(log.path, PathBuf::from(DEFAULT_LOG_FILE));
        assert_eq!(log.max_bytes, crate::calllog::DEFAULT_MAX_BYTES);
        assert_eq!(log.backups, crate::calllog::DEFAULT_BACKUPS);
    }

    #[test]
    fn log_options_set_size_and_backups() {
        let log =
            conf(json!({"logFile": "/tmp/x.log", "logOptions": {"maxSize": 2, "maxBackups": 0}}))
                .unwrap()
                .log;
        assert_eq!(log.path, PathBuf::from("/tmp/x.log"));
        assert_eq!(log.max_bytes, 2 * 1024 * 1024);
        assert_eq!(log.backups, 0);
    }

    #[test]
    fn bad_log_options_name_the_field() {
        for (bad, field) in [
            (json!({"maxSize": 1u64 << 40}), "logOptions.maxSize"),
            (json!({"maxSize": -1}), "logOptions.maxSize"),
            (json!({"maxBackups": 101}), "logOptions.maxBackups"),
        ] {
            let e = conf(json!({ "logOptions": bad })).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{bad}");
            assert!(e.msg.contains(field), "{bad}: {}", e.msg);
        }
    }

    #[test]
    fn a_wire_network_takes_no_bridge_addresses_or_guest() {
        let w = conf(json!({"wire": ["r1:eth2", "r3:eth1"]})).unwrap();
        assert_eq!(w.wire, Some(["r1:eth2".into(), "r3:eth1".into()]));
        for (extra, field) in [
            (json!({"segment": "lab1"}), "segment"),
            (json!({"bridge": "br0"}), "bridge"),
            (json!({"mtu": 1400}), "mtu"),
            (json!({"ipam": {"type": "host-local"}}), "ipam"),
            (json!({"guest": {"mode": "tap"}}), "guest"),
        ] {
            let mut v = extra.clone();
            v["wire"] = json!(["r1:eth2", "r3:eth1"]);
            let e = conf(v).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{extra}");
            assert!(
                e.msg.starts_with(&format!("{field}: ")),
                "{extra}: {}",
                e.msg
            );
        }
    }

    #[test]
    fn a_rejected_config_still_names_its_log() {
        let raw = json!({"logFile": "/tmp/y.log", "logOptions": {"maxSize": 1}, "mtu": "x"});
        let log = log_file_hint(&raw).unwrap();
        assert_eq!(
            (log.path.to_str(), log.max_bytes),
            (Some("/tmp/y.log"), 1 << 20)
        );
    }
}
