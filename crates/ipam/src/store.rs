//! The on-disk reservation store, byte-for-byte host-local's format.
//!
//! Layout of `<dataDir>/<network>/` (containernetworking/plugins,
//! `plugins/ipam/host-local/backend/disk/backend.go` and `lock.go`):
//!
//! * one file per reserved address, named by the address as Go prints it
//!   (dotted quad; RFC 5952 text for IPv6, which is also what Rust prints),
//!   holding `<containerID>\r\n<ifname>`; files written before host-local
//!   knew interface names hold only the ID;
//! * `last_reserved_ip.<range set index>` holding the address last reserved
//!   in that set, so allocation continues round-robin;
//! * `lock`, an empty file every writer `flock`s exclusively.
//!
//! Because both plugins take the same flock and use the same files, tweed and
//! host-local can share one store, and state survives switching plugins.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::IpamError;

const LOCK_FILE: &str = "lock";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";
const LINE_BREAK: &str = "\r\n";
/// Mode of reservation files; upstream host-local uses 0600 since v1.2
/// (v1.1.1 used 0644). Either is readable by the root-run plugins.
const FILE_MODE: u32 = 0o600;

/// An open store directory for one network.
///
/// Each `Store` holds its own descriptor of the `lock` file. `flock` locks
/// belong to the open file description, so two `Store`s, in one process or
/// two, exclude each other exactly like two host-local processes do.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    lock_file: File,
}

/// Proof that the store's lock is held; every read or write of reservations
/// goes through it. The lock is released when the guard is dropped.
#[derive(Debug)]
pub struct StoreGuard<'a> {
    store: &'a Store,
}

/// One reserved address and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub ip: IpAddr,
    pub container_id: String,
    /// `None` for legacy files that hold only the container ID.
    pub ifname: Option<String>,
}

impl Reservation {
    /// Parses a reservation file's content the way host-local compares it:
    /// the whole content, trimmed, is either `<id>\r\n<ifname>` or `<id>`.
    pub fn parse(ip: IpAddr, content: &[u8]) -> Reservation {
        let text = String::from_utf8_lossy(content);
        let text = text.trim();
        match text.split_once(LINE_BREAK) {
            Some((id, ifname)) => Reservation {
                ip,
                container_id: id.to_string(),
                ifname: Some(ifname.to_string()),
            },
            None => Reservation {
                ip,
                container_id: text.to_string(),
                ifname: None,
            },
        }
    }

    /// Held by exactly this attachment (new-format file).
    pub fn is_for(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id.trim() && self.ifname.as_deref() == Some(ifname)
    }

    /// A legacy ID-only file of this container.
    pub fn is_legacy_of(&self, container_id: &str) -> bool {
        self.ifname.is_none() && self.container_id == container_id.trim()
    }
}

impl Store {
    /// Opens (creating as needed) `<data_dir>/<network>` with mode 0755 and
    /// its `lock` file. `network` must be a single path component, because it
    /// comes from the network config and must not escape `data_dir`
    /// (host-local does not check this).
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, IpamError> {
        check_network_name(network)?;
        let dir = data_dir.join(network);
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| IpamError::io(&dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        // Read-only suffices for flock (host-local opens it so); create only
        // when missing.
        let lock_file = match File::open(&lock_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(FILE_MODE)
                .open(&lock_path)
                .map_err(|e| IpamError::io(&lock_path, e))?,
            Err(e) => return Err(IpamError::io(&lock_path, e)),
        };
        Ok(Store { dir, lock_file })
    }

    /// Takes the exclusive lock, blocking while another process or `Store`
    /// holds it.
    pub fn lock(&self) -> Result<StoreGuard<'_>, IpamError> {
        self.lock_file
            .lock()
            .map_err(|e| IpamError::io(self.dir.join(LOCK_FILE), e))?;
        Ok(StoreGuard { store: self })
    }

    /// The network's directory, `<data_dir>/<network>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        // Nothing useful can be done if unlocking fails; closing the Store
        // releases the lock anyway.
        let _ = self.store.lock_file.unlock();
    }
}

impl StoreGuard<'_> {
    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.store.dir
    }

    /// Reserves `ip` for the attachment: creates its file exclusively
    /// (O_CREAT|O_EXCL, so an address is never handed out twice), writes
    /// `<id>\r\n<ifname>` and records `ip` in `last_reserved_ip.<range_set>`.
    /// Returns `false` when the address is already taken. The ID is trimmed
    /// as host-local trims it.
    pub fn reserve(
        &self,
        ip: IpAddr,
        container_id: &str,
        ifname: &str,
        range_set: usize,
    ) -> Result<bool, IpamError> {
        let id = check_container_id(container_id)?;
        check_ifname(ifname)?;
        let ip = ip.to_canonical();
        let path = self.ip_path(ip);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(IpamError::io(&path, e)),
        };
        if let Err(e) = file.write_all(format!("{id}{LINE_BREAK}{ifname}").as_bytes()) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(IpamError::io(&path, e));
        }
        drop(file);
        let last = self.last_reserved_path(range_set);
        if let Err(e) = write_file(&last, ip.to_string().as_bytes()) {
            // host-local leaves the address reserved here; undo it so a
            // failed call leaks nothing.
            let _ = fs::remove_file(&path);
            return Err(IpamError::io(&last, e));
        }
        Ok(true)
    }

    /// Releases one address; releasing a free address is not an error.
    pub fn release(&self, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.ip_path(ip.to_canonical());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IpamError::io(&path, e)),
        }
    }

    /// Releases every address of the attachment, as host-local's DEL does:
    /// first all files reading exactly `<id>\r\n<ifname>`; only when there
    /// were none, all legacy files holding just `<id>`. Unreadable or
    /// unremovable files are skipped (DEL must release as much as it can).
    /// Returns the released addresses. host-local's DEL calls this once per
    /// range set, which changes the legacy outcome;
    /// [`release_attachment`](crate::release_attachment) reproduces that.
    pub fn release_by_id(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let id = check_container_id(container_id)?;
        let all = self.scan(true)?;
        let mut released = self.remove_matching(&all, |r| r.is_for(id, ifname));
        if released.is_empty() {
            released = self.remove_matching(&all, |r| r.is_legacy_of(id));
        }
        Ok(released)
    }

    /// Releases each of `ips` that this attachment holds (file content
    /// `<id>\r\n<ifname>`), without scanning the store: DEL usually knows
    /// the addresses from `prevResult`. Returns the ones released; the
    /// caller falls back to [`release_by_id`](Self::release_by_id) when that
    /// is not all of them.
    pub fn release_owned(
        &self,
        ips: &[IpAddr],
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, IpamError> {
        let id = check_container_id(container_id)?;
        let mut released = Vec::new();
        for ip in ips {
            let ip = ip.to_canonical();
            let path = self.ip_path(ip);
            let content = match fs::read(&path) {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(IpamError::io(&path, e)),
            };
            if Reservation::parse(ip, &content).is_for(id, ifname) {
                self.release(ip)?;
                released.push(ip);
            }
        }
        Ok(released)
    }

    /// Every reservation, sorted by address. Only files named by an address
    /// count; `lock`, `last_reserved_ip.*` and strangers are ignored.
    pub fn reservations(&self) -> Result<Vec<Reservation>, IpamError> {
        self.scan(false)
    }

    /// Like [`reservations`](Self::reservations) but skipping unreadable
    /// files, for callers that must make progress (GC, DEL).
    pub(crate) fn reservations_lenient(&self) -> Result<Vec<Reservation>, IpamError> {
        self.scan(true)
    }

    /// The reservation of one address, if it is reserved.
    pub fn reservation(&self, ip: IpAddr) -> Result<Option<Reservation>, IpamError> {
        let ip = ip.to_canonical();
        let path = self.ip_path(ip);
        match fs::read(&path) {
            Ok(content) => Ok(Some(Reservation::parse(ip, &content))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IpamError::io(&path, e)),
        }
    }

    /// The reserved addresses only (file names, no contents): what the
    /// allocator needs to skip taken addresses without a syscall each.
    pub fn reserved_addresses(&self) -> Result<HashSet<IpAddr>, IpamError> {
        Ok(self.entries()?.into_iter().map(|(ip, _)| ip).collect())
    }

    /// Addresses held by the attachment, legacy ID-only files included
    /// (host-local's `GetByID`, used for its duplicate-ADD check and CHECK).
    pub fn find_by_id(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, IpamError> {
        let id = container_id.trim();
        Ok(self
            .scan(true)?
            .into_iter()
            .filter(|r| r.is_for(id, ifname) || r.is_legacy_of(id))
            .map(|r| r.ip)
            .collect())
    }

    /// The content of `last_reserved_ip.<range_set>`; `None` when missing or
    /// not an address (host-local then starts from the set's beginning).
    pub fn last_reserved(&self, range_set: usize) -> Result<Option<IpAddr>, IpamError> {
        let path = self.last_reserved_path(range_set);
        match fs::read(&path) {
            Ok(content) => Ok(String::from_utf8_lossy(&content)
                .trim()
                .parse::<IpAddr>()
                .ok()
                .map(|ip| ip.to_canonical())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IpamError::io(&path, e)),
        }
    }

    /// The raw content of `last_reserved_ip.<range_set>`, `None` when the
    /// file does not exist: what [`restore_last_reserved`] puts back.
    ///
    /// [`restore_last_reserved`]: Self::restore_last_reserved
    pub fn last_reserved_raw(&self, range_set: usize) -> Result<Option<Vec<u8>>, IpamError> {
        let path = self.last_reserved_path(range_set);
        match fs::read(&path) {
            Ok(content) => Ok(Some(content)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IpamError::io(&path, e)),
        }
    }

    /// Puts `last_reserved_ip.<range_set>` back to `previous` (removing it
    /// when `previous` is `None`), but only while it still names `taken`:
    /// a later allocation that moved the cursor on is not undone.
    pub fn restore_last_reserved(
        &self,
        range_set: usize,
        taken: IpAddr,
        previous: Option<&[u8]>,
    ) -> Result<(), IpamError> {
        if self.last_reserved(range_set)? != Some(taken.to_canonical()) {
            return Ok(());
        }
        let path = self.last_reserved_path(range_set);
        let done = match previous {
            Some(content) => write_file(&path, content),
            None => fs::remove_file(&path),
        };
        done.map_err(|e| IpamError::io(&path, e))
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.store.dir.join(ip.to_string())
    }

    fn last_reserved_path(&self, range_set: usize) -> PathBuf {
        self.store
            .dir
            .join(format!("{LAST_RESERVED_PREFIX}{range_set}"))
    }

    /// Address-named regular files (and symlinks, as host-local reads
    /// through them) of the directory, sorted by address.
    fn entries(&self) -> Result<Vec<(IpAddr, PathBuf)>, IpamError> {
        let dir = &self.store.dir;
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| IpamError::io(dir, e))? {
            let entry = entry.map_err(|e| IpamError::io(dir, e))?;
            let Some(ip) = entry.file_name().to_str().and_then(reservation_file_ip) else {
                continue;
            };
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| IpamError::io(&path, e))?;
            if file_type.is_dir() {
                continue;
            }
            out.push((ip, path));
        }
        out.sort();
        Ok(out)
    }

    /// Reads every reservation. `tolerant` skips files that cannot be read,
    /// like host-local's walks do; otherwise the first failure is returned.
    fn scan(&self, tolerant: bool) -> Result<Vec<Reservation>, IpamError> {
        let mut out = Vec::new();
        for (ip, path) in self.entries()? {
            match fs::read(&path) {
                Ok(content) => out.push(Reservation::parse(ip, &content)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(_) if tolerant => {}
                Err(e) => return Err(IpamError::io(&path, e)),
            }
        }
        Ok(out)
    }

    fn remove_matching(
        &self,
        all: &[Reservation],
        matches: impl Fn(&Reservation) -> bool,
    ) -> Vec<IpAddr> {
        all.iter()
            .filter(|r| matches(r))
            .filter(|r| self.release(r.ip).is_ok())
            .map(|r| r.ip)
            .collect()
    }
}

/// The address whose reservation file is called `name`, if it is one.
///
/// Only the name the store itself writes (and host-local: Go prints the
/// same text) counts. Other spellings of an address (`fd00:0::7`,
/// `::ffff:10.244.1.7`) would give one address a second file, so two
/// owners, and releasing one would delete the other's file.
pub fn reservation_file_ip(name: &str) -> Option<IpAddr> {
    let ip = name.parse::<IpAddr>().ok()?.to_canonical();
    (ip.to_string() == name).then_some(ip)
}

/// Writes a small file with the store's file mode, replacing its content.
///
/// Not with `O_TRUNC`: truncating a non-empty file makes ext4 flush it on
/// close (its `auto_da_alloc` safety net), which costs a quarter of a
/// millisecond on every ADD. Overwriting and then cutting to length gives
/// the same content; a crash between the two leaves at worst a longer
/// address, which host-local and tweed both treat as "start from the
/// beginning of the range".
fn write_file(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    f.write_all(content)?;
    f.set_len(content.len() as u64)
}

fn check_network_name(network: &str) -> Result<(), IpamError> {
    let reason = if network.is_empty() {
        "the network name is empty"
    } else if network == "." || network == ".." {
        "the network name must not be \".\" or \"..\""
    } else if network.contains('/') || network.contains('\0') {
        "the network name must be a single path component (no '/' or NUL)"
    } else {
        return Ok(());
    };
    Err(IpamError::config("name", format!("{network:?}: {reason}")))
}

/// The trimmed ID; it must be non-empty and on one line, or the file format
/// (`<id>\r\n<ifname>`) would be ambiguous.
pub(crate) fn check_container_id(container_id: &str) -> Result<&str, IpamError> {
    let id = container_id.trim();
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.contains(['\r', '\n']) {
        "it contains a line break"
    } else {
        return Ok(id);
    };
    Err(IpamError::InvalidArgument {
        name: "container ID".to_string(),
        reason: format!("{container_id:?}: {reason}"),
    })
}

/// Interface names must be non-empty and free of whitespace: host-local
/// trims file contents before comparing, so such a name could never match.
pub(crate) fn check_ifname(ifname: &str) -> Result<(), IpamError> {
    let reason = if ifname.is_empty() {
        "it is empty"
    } else if ifname.chars().any(char::is_whitespace) {
        "it contains whitespace"
    } else {
        return Ok(());
    };
    Err(IpamError::InvalidArgument {
        name: "interface name".to_string(),
        reason: format!("{ifname:?}: {reason}"),
    })
}
