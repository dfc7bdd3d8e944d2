//! A node's block of a segment's `Subnet`: tweedd claims it in the store
//! and writes it here; the plugin allocates the segment's pod addresses
//! from it. Data flows one way, as for the node lease: store → tweedd →
//! file → plugin.
//!
//! One file per segment, `<dir>/<name>.env` (default dir
//! `/run/tweed/segments`), in the same `KEY=value` shape as
//! `/run/tweed/subnet.env`:
//!
//! ```text
//! TWEED_SEGMENT=lab1
//! TWEED_SEGMENT_SUBNET=192.168.50.0/24
//! TWEED_SEGMENT_BLOCK=192.168.50.16/28
//! ```
//!
//! While tweedd cannot claim a block (every block is taken, the store is
//! unreachable) `TWEED_SEGMENT_UNCLAIMED=<why>` stands instead of
//! `TWEED_SEGMENT_BLOCK`, so the plugin says why instead of silently
//! handing out no address.
//!
//! Written atomically (temporary file + rename): a plugin never reads half
//! a file.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use thiserror::Error;

/// Where tweedd writes the block files by default (`--segment-dir`).
pub const DEFAULT_DIR: &str = "/run/tweed/segments";

/// One node's block of one segment's subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The segment's whole `Subnet`: its prefix length is the one pods get.
    pub subnet: Ipv4Net,
    /// This node's part of it.
    pub block: Ipv4Net,
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
    Claimed(Block),
    /// The segment has a subnet but this node holds no block of it yet.
    Unclaimed {
        subnet: Ipv4Net,
        reason: String,
    },
}

impl BlockFile {
    pub fn render(&self, name: &str) -> String {
        match self {
            BlockFile::Claimed(b) => format!(
                "TWEED_SEGMENT={name}\nTWEED_SEGMENT_SUBNET={}\nTWEED_SEGMENT_BLOCK={}\n",
                b.subnet, b.block
            ),
            BlockFile::Unclaimed { subnet, reason } => format!(
                "TWEED_SEGMENT={name}\nTWEED_SEGMENT_SUBNET={subnet}\nTWEED_SEGMENT_UNCLAIMED={}\n",
                reason.replace('\n', " ")
            ),
        }
    }

    /// Parses a block file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<BlockFile, BlockFileError> {
        let invalid = |key, reason: String| BlockFileError::Invalid {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let raw = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
        };
        let net = |key: &'static str| -> Result<Ipv4Net, BlockFileError> {
            let v = raw(key).ok_or_else(|| invalid(key, "missing".into()))?;
            v.parse()
                .map_err(|_| invalid(key, format!("{v:?} is not an IPv4 subnet")))
        };
        let subnet = net("TWEED_SEGMENT_SUBNET")?;
        if let Some(reason) = raw("TWEED_SEGMENT_UNCLAIMED") {
            return Ok(BlockFile::Unclaimed {
                subnet,
                reason: reason.to_string(),
            });
        }
        let block = net("TWEED_SEGMENT_BLOCK")?;
        if !subnet.contains(&block) {
            return Err(invalid(
                "TWEED_SEGMENT_BLOCK",
                format!("{block} is not inside {subnet}"),
            ));
        }
        Ok(BlockFile::Claimed(Block { subnet, block }))
    }

    /// Writes the block file of segment `name` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let file = path(dir, name);
        let tmp = file.with_extension("env.tmp");
        fs::write(&tmp, self.render(name))?;
        fs::rename(&tmp, &file).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    /// The block file of segment `name`, or `None` when tweedd wrote none
    /// (the segment has no `Subnet`).
    pub fn read(dir: &Path, name: &str) -> Result<Option<BlockFile>, BlockFileError> {
        let file = path(dir, name);
        match fs::read_to_string(&file) {
            Ok(text) => BlockFile::parse(&text, &file).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BlockFileError::Unreadable { path: file, source }),
        }
    }
}

impl Block {
    /// The addresses pods may get: the whole block but the subnet's own
    /// network and broadcast addresses (a block is not a subnet of its
    /// own, so its edges are ordinary hosts).
    pub fn usable(&self) -> (Ipv4Addr, Ipv4Addr) {
        let mut first = self.block.network();
        let mut last = self.block.broadcast();
        if first == self.subnet.network() {
            first = Ipv4Addr::from(u32::from(first) + 1);
        }
        if last == self.subnet.broadcast() {
            last = Ipv4Addr::from(u32::from(last) - 1);
        }
        (first, last)
    }
}

/// Removes the block files in `dir` of segments not in `keep` (a segment
/// that lost its `Subnet` or left the config); returns their names.
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
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(".env")) else {
            continue;
        };
        if !keep.contains(&name) {
            fs::remove_file(entry.path())?;
            removed.push(name.to_string());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(subnet: &str, block: &str) -> Block {
        Block {
            subnet: subnet.parse().unwrap(),
            block: block.parse().unwrap(),
        }
    }

    #[test]
    fn usable_addresses_skip_only_the_subnets_edges() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
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
        let b = BlockFile::Claimed(block("192.168.50.0/24", "192.168.50.32/28"));
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

        let waiting = BlockFile::Unclaimed {
            subnet: "10.9.0.0/16".parse().unwrap(),
            reason: "all 4 blocks\nare claimed".into(),
        };
        waiting.write(&dir, "gone").unwrap();
        assert_eq!(
            BlockFile::read(&dir, "gone").unwrap(),
            Some(BlockFile::Unclaimed {
                subnet: "10.9.0.0/16".parse().unwrap(),
                reason: "all 4 blocks are claimed".into(),
            })
        );
        assert_eq!(remove_others(&dir, &["lab1"]).unwrap(), vec!["gone"]);
        assert!(BlockFile::read(&dir, "gone").unwrap().is_none());
        assert!(BlockFile::read(&dir, "lab1").unwrap().is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
