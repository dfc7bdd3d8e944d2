//! `file:///dir`: leases as files in a directory shared by every agent on
//! one machine (the embedded default and the lab's store).
//!
//! Layout: `<dir>/subnets/<key>` holds one lease (flannel's record plus an
//! expiry), `<dir>/revision` counts changes, `<dir>/lock` is taken with
//! flock around every change, so agents in different processes never both
//! create the same key. Watchers learn about changes through inotify on the
//! directory, with a slow poll as a safety net.

mod watch;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use tokio::sync::mpsc;

use crate::lease::{Lease, LeaseAttrs, LeaseKey};
use crate::store::{Created, LeaseStore, Snapshot, StoreError, WatchEvent};

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

/// What a lease file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    attrs: LeaseAttrs,
    /// Seconds since the epoch; tweed's addition to flannel's record.
    #[serde(rename = "Expires")]
    expires: u64,
}

fn unavailable(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl FileStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<FileStore, StoreError> {
        let root = root.into();
        let subnets = root.join("subnets");
        fs::create_dir_all(&subnets).map_err(|e| unavailable("creating", &subnets, e))?;
        let store = FileStore { root };
        // What agents killed mid-write left (an agent restarting after a
        // kill -9 is when there is most likely one).
        if let Ok(_lock) = store.lock() {
            remove_stale_temps(&store.subnets());
            remove_stale_temps(&store.root);
        }
        Ok(store)
    }

    /// Parses `file:///dir`.
    pub fn from_url(url: &str) -> Result<FileStore, StoreError> {
        let path = url
            .strip_prefix("file://")
            .ok_or_else(|| StoreError::Config(format!("{url:?} is not a file:// URL")))?;
        if !path.starts_with('/') {
            return Err(StoreError::Config(format!(
                "{url:?}: the path must be absolute (file:///var/lib/tweed/store)"
            )));
        }
        FileStore::open(path)
    }

    /// A store of its own under `<dir>/<path>` (segment address blocks).
    pub fn nested(&self, path: &str) -> Result<FileStore, StoreError> {
        FileStore::open(self.root.join(path))
    }

    pub(super) fn subnets(&self) -> PathBuf {
        self.root.join("subnets")
    }

    fn open_lock(&self) -> Result<(File, PathBuf), StoreError> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| unavailable("opening", &path, e))?;
        Ok((f, path))
    }

    /// The writers' lock, held around a change and its revision bump.
    fn lock(&self) -> Result<File, StoreError> {
        let (f, path) = self.open_lock()?;
        f.lock().map_err(|e| unavailable("locking", &path, e))?;
        Ok(f)
    }

    /// The readers' lock: a listing taken under it never sees a change
    /// whose revision bump has not happened yet, so a snapshot's revision
    /// always matches its contents (a watch started from that revision
    /// would otherwise miss the change for good).
    fn lock_shared(&self) -> Result<File, StoreError> {
        let (f, path) = self.open_lock()?;
        f.lock_shared()
            .map_err(|e| unavailable("locking", &path, e))?;
        Ok(f)
    }

    pub(super) fn revision(&self) -> u64 {
        fs::read_to_string(self.root.join("revision"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Bumps the revision; called with the lock held.
    fn bump(&self) -> Result<u64, StoreError> {
        let next = self.revision() + 1;
        write_atomic(&self.root.join("revision"), next.to_string().as_bytes())?;
        Ok(next)
    }

    pub(super) fn read(&self, key: &LeaseKey) -> Result<Option<Lease>, StoreError> {
        let path = self.subnets().join(key.to_string());
        match fs::read(&path) {
            Ok(bytes) => parse_record(key, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable("reading", &path, e)),
        }
    }

    fn write(&self, lease: &Lease) -> Result<(), StoreError> {
        write_atomic(
            &self.subnets().join(lease.key.to_string()),
            &render_record(lease),
        )?;
        // Called with the writers' lock held: no other write is under way.
        remove_stale_temps(&self.subnets());
        Ok(())
    }

    /// Hands every unexpired lease on disk to `f`, one at a time, under
    /// the readers' lock; returns the revision they belong to. Streaming
    /// rather than collecting lets a watcher keep only what changed out of
    /// thousands of leases.
    pub(super) fn scan(&self, mut f: impl FnMut(Lease)) -> Result<u64, StoreError> {
        let _lock = self.lock_shared()?;
        let revision = self.revision();
        let now = SystemTime::now();
        let dir = self.subnets();
        for entry in fs::read_dir(&dir).map_err(|e| unavailable("listing", &dir, e))? {
            let entry = entry.map_err(|e| unavailable("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue; // a write in progress
            }
            let Ok(key) = name.parse::<LeaseKey>() else {
                continue;
            };
            match fs::read(entry.path()) {
                Ok(bytes) => match parse_record(&key, &bytes) {
                    Ok(lease) if !lease.is_expired(now) => f(lease),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "ignoring unreadable lease file"),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(unavailable("reading", &entry.path(), e)),
            }
        }
        Ok(revision)
    }

    pub(super) fn list_sync(&self) -> Result<Snapshot, StoreError> {
        let mut leases = Vec::new();
        let revision = self.scan(|l| leases.push(l))?;
        leases.sort_by_key(|l| l.key);
        leases.shrink_to_fit();
        Ok(Snapshot { leases, revision })
    }

    fn create_sync(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        let _lock = self.lock()?;
        if let Some(existing) = self.read(&lease.key)?
            && !existing.is_expired(SystemTime::now())
        {
            return Ok(Created::Taken);
        }
        let mut stored = lease.clone();
        stored.expires = Some(SystemTime::now() + ttl);
        self.write(&stored)?;
        self.bump()?;
        Ok(Created::Yes(stored))
    }

    fn renew_sync(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let _lock = self.lock()?;
        match self.read(&lease.key)? {
            Some(existing) if existing.same_owner(&lease.attrs) => {}
            _ => return Err(StoreError::LeaseLost(lease.key)),
        }
        let mut stored = lease.clone();
        stored.expires = Some(SystemTime::now() + ttl);
        self.write(&stored)?;
        self.bump()?;
        Ok(stored)
    }

    fn delete_sync(&self, key: &LeaseKey) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let path = self.subnets().join(key.to_string());
        match fs::remove_file(&path) {
            Ok(()) => {
                self.bump()?;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable("deleting", &path, e)),
        }
    }
}

/// A lease file's bytes.
pub fn render_record(lease: &Lease) -> Vec<u8> {
    let record = Record {
        attrs: lease.attrs.clone(),
        expires: lease.expires.map(epoch_secs).unwrap_or(u64::MAX),
    };
    serde_json::to_vec(&record).expect("lease record serialises")
}

/// Reads a lease file's bytes (public for the fuzz targets).
pub fn parse_record(key: &LeaseKey, bytes: &[u8]) -> Result<Lease, StoreError> {
    let record: Record = serde_json::from_slice(bytes).map_err(|e| StoreError::BadRecord {
        key: key.to_string(),
        reason: e.to_string(),
    })?;
    let expires = match record.expires {
        u64::MAX => None,
        secs => Some(
            UNIX_EPOCH
                .checked_add(Duration::from_secs(secs))
                .ok_or_else(|| StoreError::BadRecord {
                    key: key.to_string(),
                    reason: format!("Expires {secs} is not a time this system can represent"),
                })?,
        ),
    };
    Ok(Lease {
        key: *key,
        attrs: record.attrs,
        expires,
    })
}

/// `.<name>.<pid>`: the temporary file [`write_atomic`] renames into place.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.rsplit_once('.'))
        .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the temporary files of writers that died between creating and
/// renaming them (kill -9, a power cut). Only with the writers' lock held:
/// then no write is under way and every one there is stale.
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(is_temp_name) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Writes through a hidden temporary file and a rename, so readers never
/// see half a record.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let result = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        unavailable("writing", path, e)
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task: {e}")))?
}

impl LeaseStore for FileStore {
    async fn list(&self) -> Result<Snapshot, StoreError> {
        let s = self.clone();
        blocking(move || s.list_sync()).await
    }

    async fn create(&self, lease: &Lease, ttl: Duration) -> Result<Created, StoreError> {
        let (s, lease) = (self.clone(), lease.clone());
        blocking(move || s.create_sync(&lease, ttl)).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let (s, lease) = (self.clone(), lease.clone());
        blocking(move || s.renew_sync(&lease, ttl)).await
    }

    async fn delete(&self, key: &LeaseKey) -> Result<(), StoreError> {
        let (s, key) = (self.clone(), *key);
        blocking(move || s.delete_sync(&key)).await
    }

    async fn watch(&self, revision: u64) -> Result<mpsc::Receiver<WatchEvent>, StoreError> {
        watch::watch(self.clone(), revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(key: &str, node: &str) -> Lease {
        Lease {
            key: key.parse().unwrap(),
            attrs: LeaseAttrs {
                public_ip: Some("198.18.0.1".parse().unwrap()),
                public_ipv6: None,
                backend_type: "vxlan".into(),
                backend_data: json!({"VNI": 1, "VtepMAC": "02:00:00:00:00:01"}).into(),
                backend_v6_data: crate::lease::BackendData::null(),
                node_name: node.into(),
                segment_macs: Default::default(),
                wire_ends: Default::default(),
            },
            expires: None,
        }
    }

    #[test]
    fn stale_temporary_files_are_removed_on_open_and_write() {
        assert!(is_temp_name(".10.244.1.0-24.17722"));
        assert!(is_temp_name(".revision.5"));
        assert!(!is_temp_name("10.244.1.0-24"));
        assert!(!is_temp_name(".hidden"));
        assert!(!is_temp_name(".x.12a"));
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let stale = s.subnets().join(".10.244.1.0-24.4242");
        std::fs::write(&stale, b"{").unwrap();
        std::fs::write(dir.path().join(".revision.4242"), b"1").unwrap();
        let other = s.subnets().join(".keep");
        std::fs::write(&other, b"").unwrap();
        FileStore::open(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(!dir.path().join(".revision.4242").exists());
        assert!(other.exists(), "not a temporary file of the store's");
        std::fs::write(&stale, b"{").unwrap();
        s.write(&lease("10.244.2.0-24", "b")).unwrap();
        assert!(!stale.exists());
    }

    /// Found by the file_store_record fuzz target: an `Expires` past what
    /// `SystemTime` holds panicked (an overflowing addition).
    #[test]
    fn an_expiry_out_of_range_is_a_bad_record() {
        let key: LeaseKey = "10.244.1.0-24".parse().unwrap();
        let bytes = br#"{"BackendType":"host-gw","Expires":18446744073709551614}"#;
        match parse_record(&key, bytes) {
            Err(StoreError::BadRecord { key, reason }) => {
                assert_eq!(key, "10.244.1.0-24");
                assert!(reason.contains("Expires 18446744073709551614"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let never = br#"{"BackendType":"host-gw","Expires":18446744073709551615}"#;
        assert_eq!(parse_record(&key, never).unwrap().expires, None);
    }

    #[tokio::test]
    async fn create_is_exclusive_and_renew_checks_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let a = lease("10.244.1.0-24", "a");
        let stored = match s.create(&a, Duration::from_secs(60)).await.unwrap() {
            Created::Yes(l) => l,
            Created::Taken => panic!("free key reported taken"),
        };
        assert!(stored.expires.is_some());
        assert_eq!(
            s.create(&lease("10.244.1.0-24", "b"), Duration::from_secs(60))
                .await
                .unwrap(),
            Created::Taken
        );
        s.renew(&a, Duration::from_secs(60)).await.unwrap();
        assert!(matches!(
            s.renew(&lease("10.244.1.0-24", "b"), Duration::from_secs(60))
                .await,
            Err(StoreError::LeaseLost(_))
        ));
        let snap = s.list().await.unwrap();
        assert_eq!(snap.leases.len(), 1);
        assert!(snap.revision >= 2);
        s.delete(&a.key).await.unwrap();
        assert!(s.list().await.unwrap().leases.is_empty());
        assert!(matches!(
            s.renew(&a, Duration::from_secs(60)).await,
            Err(StoreError::LeaseLost(_))
        ));
    }

    #[tokio::test]
    async fn expired_leases_are_invisible_and_free() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let a = lease("10.244.2.0-24", "a");
        s.create(&a, Duration::ZERO).await.unwrap();
        assert!(s.list().await.unwrap().leases.is_empty());
        assert!(matches!(
            s.create(&lease("10.244.2.0-24", "b"), Duration::from_secs(60))
                .await
                .unwrap(),
            Created::Yes(_)
        ));
    }

    #[tokio::test]
    async fn watch_reports_puts_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let snap = s.list().await.unwrap();
        let mut rx = s.watch(snap.revision).await.unwrap();
        let a = lease("10.244.3.0-24", "a");
        s.create(&a, Duration::from_secs(60)).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(ev, WatchEvent::Put(ref l) if l.key == a.key),
            "{ev:?}"
        );
        s.delete(&a.key).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev, WatchEvent::Delete(a.key));
    }

    #[tokio::test]
    async fn watch_from_a_stale_revision_asks_for_a_resync() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let snap = s.list().await.unwrap();
        s.create(&lease("10.244.4.0-24", "a"), Duration::from_secs(60))
            .await
            .unwrap();
        let mut rx = s.watch(snap.revision).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev, WatchEvent::Resync);
    }

    /// Hundreds of leases appearing at once (renamed in, as the store's own
    /// atomic writes end) all reach the watcher promptly — well inside the
    /// watcher's 30 s full resync, which once had to rescue most of them.
    #[tokio::test]
    async fn a_burst_of_new_leases_is_seen_without_waiting_for_the_resync() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        let staging = FileStore::open(dir.path().join("staging")).unwrap();
        let keys: Vec<String> = (0..800)
            .map(|i| format!("10.{}.{}.0-24", 100 + i / 256, i % 256))
            .collect();
        for k in &keys {
            staging
                .create(&lease(k, k), Duration::from_secs(600))
                .await
                .unwrap();
        }
        let snap = s.list().await.unwrap();
        let mut rx = s.watch(snap.revision).await.unwrap();
        for k in &keys {
            fs::rename(staging.subnets().join(k), s.subnets().join(k)).unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while seen.len() < keys.len() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(WatchEvent::Put(l))) => {
                    seen.insert(l.key);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        assert_eq!(seen.len(), keys.len(), "leases missed by the watch");
    }

    #[test]
    fn concurrent_creates_from_many_threads_give_one_winner_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let winners: usize = rt.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..16 {
                let s = FileStore::open(dir.path()).unwrap();
                tasks.push(tokio::spawn(async move {
                    let l = lease("10.244.5.0-24", &format!("n{i}"));
                    matches!(
                        s.create(&l, Duration::from_secs(60)).await.unwrap(),
                        Created::Yes(_)
                    ) as usize
                }));
            }
            let mut n = 0;
            for t in tasks {
                n += t.await.unwrap();
            }
            n
        });
        assert_eq!(winners, 1);
    }
}
