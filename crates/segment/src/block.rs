//! A node's blocks of a segment's subnets: tweedd claims them in the store
//! and writes them here; the plugin allocates the segment's pod addresses
//! from them. Data flows one way, as for the node lease: store → tweedd →
//! file → plugin.
//!
//! One file per segment, `<dir>/<name>.env` (default dir
//! `/run/tweed/segments`), in the same `KEY=value` shape as
//! `/run/tweed/subnet.env` (the codec is [`tweed_node::kv`]), with the lines of the families the segment
//! has:
//!
//! ```text
//! TWEED_SEGMENT=lab1
//! TWEED_SEGMENT_SUBNET=192.168.50.0/24
//! TWEED_SEGMENT_BLOCK=192.168.50.16/28
//! TWEED_SEGMENT_IPV6_SUBNET=fd00:50::/48
//! TWEED_SEGMENT_IPV6_BLOCK=fd00:50:0:1::/64
//! ```
//!
//! A node that filled its block claims another (the plugin asks, see
//! [`crate::more`]); the `_BLOCK` lines then list every block, oldest
//! first, comma-separated — with both families, the n-th IPv4 and IPv6
//! blocks are one claim.
//!
//! While tweedd cannot claim its blocks (every block is taken, the store
//! is unreachable) `TWEED_SEGMENT_UNCLAIMED=<why>` stands instead of the
//! `_BLOCK` lines, so the plugin says why instead of silently handing out
//! no address.
//!
//! Written atomically (temporary file + rename): a plugin never reads half
//! a file.

use std::fmt::Display;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use thiserror::Error;
use tweed_node::kv;

/// Where tweedd writes the block files by default (`--segment-dir`).
pub const DEFAULT_DIR: &str = "/run/tweed/segments";

/// One node's block of one of a segment's subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block<N> {
    /// The segment's whole subnet: its prefix length is the one pods get.
    pub subnet: N,
    /// This node's part of it.
    pub block: N,
}

/// A segment's subnets, one per family it has (at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Subnets {
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
}

/// One claim of a node: a block of each subnet the segment has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Blocks {
    pub ipv4: Option<Block<Ipv4Net>>,
    pub ipv6: Option<Block<Ipv6Net>>,
}

impl Blocks {
    /// The subnets these are blocks of.
    pub fn subnets(&self) -> Subnets {
        Subnets {
            ipv4: self.ipv4.map(|b| b.subnet),
            ipv6: self.ipv6.map(|b| b.subnet),
        }
    }
}

#[derive(Debug, Error)]
pub enum BlockFileError {
    #[error("segment block file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("segment block file {path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
}

/// The block file of segment `name` in `dir`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.env"))
}

/// What a block file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockFile {
    /// The node's claims, oldest first (at least one).
    Claimed(Vec<Blocks>),
    /// The segment has subnets but this node holds no blocks of them yet.
    Unclaimed { subnets: Subnets, reason: String },
}

const SUBNET: &str = "TWEED_SEGMENT_SUBNET";
const BLOCK: &str = "TWEED_SEGMENT_BLOCK";
const IPV6_SUBNET: &str = "TWEED_SEGMENT_IPV6_SUBNET";
const IPV6_BLOCK: &str = "TWEED_SEGMENT_IPV6_BLOCK";
const UNCLAIMED: &str = "TWEED_SEGMENT_UNCLAIMED";

impl BlockFile {
    pub fn render(&self, name: &str) -> String {
        let mut w = kv::Writer::new();
        w.line("TWEED_SEGMENT", name);
        match self {
            BlockFile::Claimed(claims) => {
                let subnets = claims.first().map(Blocks::subnets).unwrap_or_default();
                let list = |blocks: Vec<String>| blocks.join(",");
                if let Some(v4) = subnets.ipv4 {
                    w.line(SUBNET, v4);
                    let blocks = claims
                        .iter()
                        .filter_map(|c| c.ipv4)
                        .map(|b| b.block.to_string());
                    w.line(BLOCK, list(blocks.collect()));
                }
                if let Some(v6) = subnets.ipv6 {
                    w.line(IPV6_SUBNET, v6);
                    let blocks = claims
                        .iter()
                        .filter_map(|c| c.ipv6)
                        .map(|b| b.block.to_string());
                    w.line(IPV6_BLOCK, list(blocks.collect()));
                }
            }
            BlockFile::Unclaimed { subnets, reason } => {
                if let Some(v4) = subnets.ipv4 {
                    w.line(SUBNET, v4);
                }
                if let Some(v6) = subnets.ipv6 {
                    w.line(IPV6_SUBNET, v6);
                }
                // The writer keeps the reason on one line.
                w.line(UNCLAIMED, reason);
            }
        }
        w.finish()
    }

    /// Parses a block file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BlockFile, BlockFileError> {
        let invalid = |key, reason: String| BlockFileError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let pairs = kv::Pairs::parse(text);
        let raw = |key: &str| pairs.get(key);
        fn net<N: FromStr>(
            value: Option<&str>,
            key: &'static str,
            family: &str,
            invalid: &impl Fn(&'static str, String) -> BlockFileError,
        ) -> Result<Option<N>, BlockFileError> {
            value
                .map(|v| {
                    v.parse()
                        .map_err(|_| invalid(key, format!("{v:?} is not an {family} subnet")))
                })
                .transpose()
        }
        let subnets = Subnets {
            ipv4: net(raw(SUBNET), SUBNET, "IPv4", &invalid)?,
            ipv6: net(raw(IPV6_SUBNET), IPV6_SUBNET, "IPv6", &invalid)?,
        };
        if subnets.ipv4.is_none() && subnets.ipv6.is_none() {
            return Err(invalid(
                SUBNET,
                "missing (and no IPv6 subnet either)".into(),
            ));
        }
        if let Some(reason) = raw(UNCLAIMED) {
            return Ok(BlockFile::Unclaimed {
                subnets,
                reason: reason.to_string(),
            });
        }
        /// The blocks of `subnet` (none without it), each inside it.
        fn blocks<N: FromStr + Copy + Into<IpNet> + Display>(
            subnet: Option<N>,
            value: Option<&str>,
            key: &'static str,
            family: &str,
            invalid: &impl Fn(&'static str, String) -> BlockFileError,
        ) -> Result<Vec<Block<N>>, BlockFileError> {
            let Some(subnet) = subnet else {
                return Ok(Vec::new());
            };
            let value = value.ok_or_else(|| invalid(key, "missing".into()))?;
            value
                .split(',')
                .map(|v| {
                    let block: N =
                        net(Some(v.trim()), key, family, invalid)?.expect("a value was given");
                    if !subnet.into().contains(&block.into()) {
                        return Err(invalid(key, format!("{block} is not inside {subnet}")));
                    }
                    Ok(Block { subnet, block })
                })
                .collect()
        }
        let v4 = blocks(subnets.ipv4, raw(BLOCK), BLOCK, "IPv4", &invalid)?;
        let v6 = blocks(subnets.ipv6, raw(IPV6_BLOCK), IPV6_BLOCK, "IPv6", &invalid)?;
        if !v4.is_empty() && !v6.is_empty() && v4.len() != v6.len() {
            return Err(invalid(
                IPV6_BLOCK,
                format!(
                    "{} blocks, but {} of {BLOCK}: each claim holds one of each",
                    v6.len(),
                    v4.len()
                ),
            ));
        }
        let claims = v4.len().max(v6.len());
        Ok(BlockFile::Claimed(
            (0..claims)
                .map(|i| Blocks {
                    ipv4: v4.get(i).copied(),
                    ipv6: v6.get(i).copied(),
                })
                .collect(),
        ))
    }

    /// Writes the block file of segment `name` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> io::Result<()> {
        kv::write_atomic(&path(dir, name), &self.render(name))
    }

    /// The block file of segment `name`, or `None` when tweedd wrote none
    /// (the segment has no subnet).
    pub fn read(dir: &Path, name: &str) -> Result<Option<BlockFile>, BlockFileError> {
        let file = path(dir, name);
        match fs::read_to_string(&file) {
            Ok(text) => BlockFile::parse(&text, &file).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlockFileError::Unreadable { path: file, source }),
        }
    }
}

impl Block<Ipv4Net> {
    /// The addresses pods may get: the whole block but the subnet's own
    /// network and broadcast addresses (a block is not a subnet of its
    /// own, so its edges are ordinary hosts).
    pub fn usable(&self) -> (IpAddr, IpAddr) {
        let mut first = self.block.network();
        let mut last = self.block.broadcast();
        if first == self.subnet.network() {
            first = Ipv4Addr::from(u32::from(first) + 1);
        }
        if last == self.subnet.broadcast() {
            last = Ipv4Addr::from(u32::from(last) - 1);
        }
        (first.into(), last.into())
    }
}

impl Block<Ipv6Net> {
    /// The addresses pods may get: the whole block but the subnet's first
    /// address, the Subnet-Router anycast address (RFC 4291 2.6.1). IPv6
    /// has no broadcast address to spare.
    pub fn usable(&self) -> (IpAddr, IpAddr) {
        let mut first = self.block.network();
        if first == self.subnet.network() {
            first = Ipv6Addr::from(u128::from(first) + 1);
        }
        (first.into(), self.block.broadcast().into())
    }
}

/// Removes the block files (and requests for more) in `dir` of segments
/// not in `keep` (a segment that lost its subnets or left the config);
/// returns their names.
pub fn remove_others(dir: &Path, keep: &[&str]) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        // The block file, and a request for more blocks left beside it.
        let (name, is_block_file) = match file_name.strip_suffix(".env") {
            Some(name) => (name, true),
            None => match file_name.strip_suffix(".more") {
                Some(name) => (name, false),
                None => continue,
            },
        };
        if !keep.contains(&name) {
            fs::remove_file(entry.path())?;
            if is_block_file {
                removed.push(name.to_string());
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(subnet: &str, block: &str) -> Block<Ipv4Net> {
        Block {
            subnet: subnet.parse().unwrap(),
            block: block.parse().unwrap(),
        }
    }

    fn v4_only(b: Block<Ipv4Net>) -> BlockFile {
        BlockFile::Claimed(vec![Blocks {
            ipv4: Some(b),
            ipv6: None,
        }])
    }

    #[test]
    fn usable_addresses_skip_only_the_subnets_edges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            block("192.168.50.0/24", "192.168.50.0/28").usable(),
            (ip("192.168.50.1"), ip("192.168.50.15"))
        );
        assert_eq!(
            block("192.168.50.0/24", "192.168.50.16/28").usable(),
            (ip("192.168.50.16"), ip("192.168.50.31"))
        );
        assert_eq!(
            block("192.168.50.0/24", "192.168.50.240/28").usable(),
            (ip("192.168.50.240"), ip("192.168.50.254"))
        );
    }

    #[test]
    fn files_round_trip_and_bad_ones_name_the_key() {
        let dir = std::env::temp_dir().join(format!("tweed-block-{}", std::process::id()));
        let b = v4_only(block("192.168.50.0/24", "192.168.50.32/28"));
        b.write(&dir, "lab1").unwrap();
        assert_eq!(BlockFile::read(&dir, "lab1").unwrap(), Some(b));
        assert_eq!(BlockFile::read(&dir, "other").unwrap(), None);
        let text = fs::read_to_string(path(&dir, "lab1")).unwrap();
        assert!(
            text.contains("TWEED_SEGMENT_BLOCK=192.168.50.32/28"),
            "{text}"
        );

        let p = Path::new("x.env");
        let e = BlockFile::parse("TWEED_SEGMENT_SUBNET=192.168.50.0/24\n", p).unwrap_err();
        assert!(
            e.to_string().contains("TWEED_SEGMENT_BLOCK: missing"),
            "{e}"
        );
        let e = BlockFile::parse(
            "TWEED_SEGMENT_SUBNET=192.168.50.0/24\nTWEED_SEGMENT_BLOCK=10.0.0.0/28\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not inside"), "{e}");

        let subnets = Subnets {
            ipv4: Some("10.9.0.0/16".parse().unwrap()),
            ipv6: None,
        };
        let waiting = BlockFile::Unclaimed {
            subnets,
            reason: "all 4 blocks\nare claimed".into(),
        };
        waiting.write(&dir, "gone").unwrap();
        crate::more::ask(&dir, "gone").unwrap();
        assert_eq!(
            BlockFile::read(&dir, "gone").unwrap(),
            Some(BlockFile::Unclaimed {
                subnets,
                reason: "all 4 blocks are claimed".into(),
            })
        );
        assert_eq!(remove_others(&dir, &["lab1"]).unwrap(), vec!["gone"]);
        assert!(BlockFile::read(&dir, "gone").unwrap().is_none());
        assert_eq!(crate::more::read(&dir, "gone").unwrap(), None);
        assert!(BlockFile::read(&dir, "lab1").unwrap().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ipv6_and_dual_stack_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("tweed-block6-{}", std::process::id()));
        let v6 = Block::<Ipv6Net> {
            subnet: "fd00:50::/48".parse().unwrap(),
            block: "fd00:50:0:1::/64".parse().unwrap(),
        };
        for blocks in [
            Blocks {
                ipv4: None,
                ipv6: Some(v6),
            },
            Blocks {
                ipv4: Some(block("192.168.50.0/24", "192.168.50.16/28")),
                ipv6: Some(v6),
            },
        ] {
            let file = BlockFile::Claimed(vec![blocks]);
            file.write(&dir, "dual").unwrap();
            assert_eq!(BlockFile::read(&dir, "dual").unwrap(), Some(file));
        }
        let text = fs::read_to_string(path(&dir, "dual")).unwrap();
        assert!(
            text.contains("TWEED_SEGMENT_IPV6_BLOCK=fd00:50:0:1::/64"),
            "{text}"
        );
        fs::remove_dir_all(&dir).unwrap();

        let p = Path::new("x.env");
        let e = BlockFile::parse("TWEED_SEGMENT_IPV6_SUBNET=fd00:50::/48\n", p).unwrap_err();
        assert!(
            e.to_string().contains("TWEED_SEGMENT_IPV6_BLOCK: missing"),
            "{e}"
        );
        let e = BlockFile::parse("TWEED_SEGMENT=x\n", p).unwrap_err();
        assert!(
            e.to_string().contains("TWEED_SEGMENT_SUBNET: missing"),
            "{e}"
        );
        let e = BlockFile::parse(
            "TWEED_SEGMENT_IPV6_SUBNET=fd00:50::/48\nTWEED_SEGMENT_IPV6_BLOCK=fd00:51::/64\n",
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("is not inside"), "{e}");
    }

    #[test]
    fn usable_ipv6_addresses_skip_only_the_subnet_router_anycast() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let b = |block: &str| Block::<Ipv6Net> {
            subnet: "fd00:50::/48".parse().unwrap(),
            block: block.parse().unwrap(),
        };
        assert_eq!(
            b("fd00:50::/64").usable(),
            (ip("fd00:50::1"), ip("fd00:50::ffff:ffff:ffff:ffff"))
        );
        assert_eq!(
            b("fd00:50:0:ffff::/64").usable(),
            (
                ip("fd00:50:0:ffff::"),
                ip("fd00:50:0:ffff:ffff:ffff:ffff:ffff")
            )
        );
    }

    #[test]
    fn several_claims_list_their_blocks_oldest_first() {
        let dir = std::env::temp_dir().join(format!("tweed-blocks-{}", std::process::id()));
        let claim = |v4: &str, v6: &str| Blocks {
            ipv4: Some(block("192.168.50.0/24", v4)),
            ipv6: Some(Block {
                subnet: "fd00:50::/48".parse().unwrap(),
                block: v6.parse().unwrap(),
            }),
        };
        let file = BlockFile::Claimed(vec![
            claim("192.168.50.16/28", "fd00:50:0:1::/64"),
            claim("192.168.50.96/28", "fd00:50:0:6::/64"),
        ]);
        file.write(&dir, "lab1").unwrap();
        let text = fs::read_to_string(path(&dir, "lab1")).unwrap();
        assert!(
            text.contains("TWEED_SEGMENT_BLOCK=192.168.50.16/28,192.168.50.96/28\n"),
            "{text}"
        );
        assert!(
            text.contains("TWEED_SEGMENT_IPV6_BLOCK=fd00:50:0:1::/64,fd00:50:0:6::/64\n"),
            "{text}"
        );
        assert_eq!(BlockFile::read(&dir, "lab1").unwrap(), Some(file));
        fs::remove_dir_all(&dir).unwrap();

        let e = BlockFile::parse(
            "TWEED_SEGMENT_SUBNET=192.168.50.0/24\nTWEED_SEGMENT_BLOCK=192.168.50.16/28,192.168.50.32/28\nTWEED_SEGMENT_IPV6_SUBNET=fd00:50::/48\nTWEED_SEGMENT_IPV6_BLOCK=fd00:50::/64\n",
            Path::new("x.env"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("each claim holds one of each"),
            "{e}"
        );
    }
}
