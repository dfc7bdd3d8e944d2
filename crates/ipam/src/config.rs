//! The `ipam` section as users write it for host-local (and therefore for
//! tweed), and its validation into a typed [`IpamSpec`].
//!
//! Addresses stay strings until [`IpamConf::validate`] so that a bad value is
//! reported with its full field path (`ipam.ranges[0][1].rangeStart`) rather
//! than as an anonymous serde error.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::IpamError;
use crate::range::{Range, RangeSet};

/// host-local's default store root; state of network `N` lives in `<this>/N`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// The `ipam` object of a network configuration.
///
/// Unknown keys are ignored, as host-local ignores them, so one config can
/// serve both plugins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamConf {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ipam_type: Option<String>,
    /// A list of range sets; each attachment gets one address per set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<Vec<RangeConf>>>,
    /// Legacy single-range form; when present it becomes range set 0, ahead
    /// of everything in `ranges` (host-local prepends it the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(
        rename = "rangeStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<String>,
    #[serde(rename = "rangeEnd", default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RouteConf>>,
    /// Store root; absent or empty means [`DEFAULT_DATA_DIR`].
    #[serde(rename = "dataDir", default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Parsed for compatibility only; DNS is the plugin's business.
    #[serde(
        rename = "resolvConf",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resolv_conf: Option<PathBuf>,
}

/// One range as written: `{"subnet": .., "rangeStart": .., "rangeEnd": .., "gateway": ..}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeConf {
    pub subnet: String,
    #[serde(
        rename = "rangeStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub range_start: Option<String>,
    #[serde(rename = "rangeEnd", default, skip_serializing_if = "Option::is_none")]
    pub range_end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// One route as written: `{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConf {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// A validated route. `dst` is kept as written (host-local passes routes
/// through untouched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

/// The validated, typed IPAM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamSpec {
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
}

impl IpamConf {
    /// Parses and checks everything, filling in host-local's defaults.
    ///
    /// Errors name the offending field (`ipam.subnet`, `ipam.ranges[1][0].gateway`,
    /// `ipam.routes[2].dst`, ...).
    pub fn validate(&self) -> Result<IpamSpec, IpamError> {
        self.validate_with_runtime_ranges(&[])
    }

    /// Like [`validate`](Self::validate), with the range sets a runtime
    /// passed through the `ipRanges` capability
    /// (`runtimeConfig.ipRanges`). host-local puts those first, then the
    /// legacy `subnet`, then `ranges`; so does this. Their errors are named
    /// `runtimeConfig.ipRanges[i][j]...`.
    pub fn validate_with_runtime_ranges(
        &self,
        runtime_ranges: &[Vec<RangeConf>],
    ) -> Result<IpamSpec, IpamError> {
        let mut sets = Vec::new();
        let mut paths: Vec<Vec<String>> = Vec::new();
        push_sets(
            runtime_ranges,
            "runtimeConfig.ipRanges",
            &mut sets,
            &mut paths,
        )?;
        match &self.subnet {
            Some(subnet) => {
                let conf = RangeConf {
                    subnet: subnet.clone(),
                    range_start: self.range_start.clone(),
                    range_end: self.range_end.clone(),
                    gateway: self.gateway.clone(),
                };
                let range = conf.validate("ipam")?;
                sets.push(RangeSet(vec![range]));
                paths.push(vec!["ipam".to_string()]);
            }
            None => {
                // host-local silently ignores these without a subnet; a stray
                // rangeStart is almost always a mistake worth pointing out.
                for (name, value) in [
                    ("rangeStart", &self.range_start),
                    ("rangeEnd", &self.range_end),
                    ("gateway", &self.gateway),
                ] {
                    if value.is_some() {
                        return Err(IpamError::config(
                            format!("ipam.{name}"),
                            "set without ipam.subnet; the legacy single-range form needs \
                             a subnet (or move it into an entry of ipam.ranges)",
                        ));
                    }
                }
            }
        }
        push_sets(
            self.ranges.as_deref().unwrap_or_default(),
            "ipam.ranges",
            &mut sets,
            &mut paths,
        )?;

        if sets.is_empty() {
            return Err(IpamError::config(
                "ipam.ranges",
                "no address ranges configured; set ipam.ranges (or the legacy ipam.subnet)",
            ));
        }
        check_sets(&sets, &paths)?;

        let routes = self
            .routes
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, r)| r.validate(&format!("ipam.routes[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;

        let data_dir = match &self.data_dir {
            Some(dir) if !dir.as_os_str().is_empty() => dir.clone(),
            _ => PathBuf::from(DEFAULT_DATA_DIR),
        };
        Ok(IpamSpec {
            range_sets: sets,
            routes,
            data_dir,
        })
    }
}

impl RangeConf {
    /// Parses the strings and applies [`Range::new`]'s defaults and checks;
    /// `field` is this range's path, e.g. `ipam.ranges[0][1]`.
    pub fn validate(&self, field: &str) -> Result<Range, IpamError> {
        let subnet = parse_subnet(&format!("{field}.subnet"), &self.subnet)?;
        let ip = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|s| parse_ip(&format!("{field}.{name}"), s))
                .transpose()
        };
        Range::new(
            subnet,
            ip("rangeStart", &self.range_start)?,
            ip("rangeEnd", &self.range_end)?,
            ip("gateway", &self.gateway)?,
            field,
        )
    }
}

impl RouteConf {
    /// `field` is this route's path, e.g. `ipam.routes[0]`.
    pub fn validate(&self, field: &str) -> Result<Route, IpamError> {
        let dst_field = format!("{field}.dst");
        let dst: IpNet = self.dst.parse().map_err(|_| {
            IpamError::config(
                &dst_field,
                format!("{:?} is not a CIDR destination like 0.0.0.0/0", self.dst),
            )
        })?;
        let gw = self
            .gw
            .as_deref()
            .map(|s| parse_ip(&format!("{field}.gw"), s))
            .transpose()?;
        let route = Route { dst, gw };
        route.check(field)?;
        Ok(route)
    }
}

impl Route {
    fn check(&self, field: &str) -> Result<(), IpamError> {
        if let Some(gw) = self.gw
            && gw.is_ipv4() != matches!(self.dst, IpNet::V4(_))
        {
            return Err(IpamError::config(
                format!("{field}.gw"),
                format!(
                    "gateway {gw} is not of the same address family as dst {}",
                    self.dst
                ),
            ));
        }
        Ok(())
    }
}

impl IpamSpec {
    /// Builds a spec programmatically (e.g. from the node's lease rather than
    /// the network config) with the same checks as [`IpamConf::validate`].
    /// Error fields are named `range_sets[i][j]` and `routes[i]`.
    pub fn new(
        range_sets: Vec<RangeSet>,
        routes: Vec<Route>,
        data_dir: PathBuf,
    ) -> Result<IpamSpec, IpamError> {
        if range_sets.is_empty() {
            return Err(IpamError::config(
                "range_sets",
                "no address ranges; give at least one range set",
            ));
        }
        let mut paths = Vec::with_capacity(range_sets.len());
        for (i, set) in range_sets.iter().enumerate() {
            if set.0.is_empty() {
                return Err(IpamError::config(
                    format!("range_sets[{i}]"),
                    "empty range set; give at least one range",
                ));
            }
            let mut set_paths = Vec::with_capacity(set.0.len());
            for (j, r) in set.0.iter().enumerate() {
                let path = format!("range_sets[{i}][{j}]");
                // Fields are public, so re-run the per-range checks.
                Range::new(r.subnet, Some(r.start), Some(r.end), r.gateway, &path)?;
                set_paths.push(path);
            }
            paths.push(set_paths);
        }
        check_sets(&range_sets, &paths)?;
        for (i, route) in routes.iter().enumerate() {
            route.check(&format!("routes[{i}]"))?;
        }
        Ok(IpamSpec {
            range_sets,
            routes,
            data_dir,
        })
    }

    /// Index of the range set holding `ip`, if any.
    pub fn range_set_for(&self, ip: IpAddr) -> Option<usize> {
        self.range_sets.iter().position(|s| s.contains(ip))
    }
}

/// Validates a list of range sets written at `prefix` (`ipam.ranges`, ...),
/// appending them and their field paths.
fn push_sets(
    list: &[Vec<RangeConf>],
    prefix: &str,
    sets: &mut Vec<RangeSet>,
    paths: &mut Vec<Vec<String>>,
) -> Result<(), IpamError> {
    for (i, set) in list.iter().enumerate() {
        if set.is_empty() {
            return Err(IpamError::config(
                format!("{prefix}[{i}]"),
                "empty range set; give at least one range",
            ));
        }
        let mut ranges = Vec::with_capacity(set.len());
        let mut set_paths = Vec::with_capacity(set.len());
        for (j, conf) in set.iter().enumerate() {
            let path = format!("{prefix}[{i}][{j}]");
            ranges.push(conf.validate(&path)?);
            set_paths.push(path);
        }
        sets.push(RangeSet(ranges));
        paths.push(set_paths);
    }
    Ok(())
}

/// Cross-range checks: one family per set, no overlap inside a set, then no
/// overlap between sets (the order host-local checks them in).
fn check_sets(sets: &[RangeSet], paths: &[Vec<String>]) -> Result<(), IpamError> {
    let family = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
    for (set, set_paths) in sets.iter().zip(paths) {
        let first = &set.0[0];
        for (r, path) in set.0.iter().zip(set_paths).skip(1) {
            if r.is_ipv4() != first.is_ipv4() {
                return Err(IpamError::config(
                    path,
                    format!(
                        "mixed address families: this range is {} but {} is {}; \
                         put each family in its own range set",
                        family(r.is_ipv4()),
                        set_paths[0],
                        family(first.is_ipv4())
                    ),
                ));
            }
        }
        for b in 1..set.0.len() {
            for a in 0..b {
                if set.0[a].overlaps(&set.0[b]) {
                    return Err(overlap_error(
                        &set_paths[b],
                        &set.0[b],
                        &set_paths[a],
                        &set.0[a],
                    ));
                }
            }
        }
    }
    for b in 1..sets.len() {
        for a in 0..b {
            for (rb, pb) in sets[b].0.iter().zip(&paths[b]) {
                for (ra, pa) in sets[a].0.iter().zip(&paths[a]) {
                    if ra.overlaps(rb) {
                        return Err(overlap_error(pb, rb, pa, ra));
                    }
                }
            }
        }
    }
    Ok(())
}

fn overlap_error(path: &str, range: &Range, other_path: &str, other: &Range) -> IpamError {
    IpamError::config(
        path,
        format!("range {range} overlaps {other_path} ({other})"),
    )
}

fn parse_subnet(field: &str, s: &str) -> Result<IpNet, IpamError> {
    s.parse().map_err(|_| {
        let reason = if s.parse::<IpAddr>().is_ok() {
            format!(
                "{s:?} is a single address; write a subnet with a prefix length like 10.244.1.0/24"
            )
        } else {
            format!("{s:?} is not a CIDR subnet like 10.244.1.0/24")
        };
        IpamError::config(field, reason)
    })
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, IpamError> {
    s.parse()
        .map_err(|_| IpamError::config(field, format!("{s:?} is not an IP address")))
}
