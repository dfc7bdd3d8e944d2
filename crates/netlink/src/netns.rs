//! Network namespace handles.
//!
//! A [`NetNs`] is an open file descriptor on a namespace (`/run/netns/<name>`,
//! `/proc/<pid>/ns/net`, or any bind mount of one). Holding the descriptor
//! keeps the namespace alive and lets us enter it without racing a path that
//! could be replaced. Entering is per thread: [`NetNs::run`] switches the
//! calling thread in, runs a closure and switches back.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::error::{NetlinkError, Result};

/// Where iproute2 (and so every tool operators know) keeps named namespaces.
pub const NAMED_NETNS_DIR: &str = "/run/netns";

/// `NS_GET_NSTYPE` from `<linux/nsfs.h>`: `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path` and checks that it really is a network namespace, so a
    /// wrong `CNI_NETNS` is reported as such instead of failing later.
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs> {
        let path = path.as_ref();
        let err = |source| NetlinkError::Netns {
            path: path.display().to_string(),
            source,
        };
        let file = File::open(path).map_err(err)?;
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the file
        // descriptor, which `file` keeps open for the duration of the call.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if kind < 0 {
            let e = io::Error::last_os_error();
            let reason = if e.raw_os_error() == Some(libc::ENOTTY) {
                io::Error::new(io::ErrorKind::InvalidInput, "not a namespace file")
            } else {
                e
            };
            return Err(err(reason));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a namespace, but not a network namespace",
            )));
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The calling thread's current network namespace.
    pub fn current() -> Result<NetNs> {
        // Certainly a network namespace: no need for open()'s type check.
        let path = Path::new("/proc/thread-self/ns/net");
        let file = File::open(path).map_err(|source| NetlinkError::Netns {
            path: path.display().to_string(),
            source,
        })?;
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Opens the named namespace `/run/netns/<name>`.
    pub fn named(name: &str) -> Result<NetNs> {
        NetNs::open(Path::new(NAMED_NETNS_DIR).join(name))
    }

    /// Creates a new, empty named namespace the way `ip netns add` does: a
    /// file under `/run/netns` with the namespace bind-mounted onto it.
    pub fn create_named(name: &str) -> Result<NetNs> {
        let dir = Path::new(NAMED_NETNS_DIR);
        let target = dir.join(name);
        let err = |source| NetlinkError::Netns {
            path: target.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        share_named_dir(dir).map_err(err)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(err)?;
        // A fresh thread unshares, so the caller's thread never leaves its
        // namespace even for a moment.
        let bind_target = target.clone();
        let result = std::thread::spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &bind_target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
        if let Err(e) = result {
            let _ = fs::remove_file(&target);
            return Err(err(e));
        }
        NetNs::open(&target)
    }

    /// Removes a named namespace. The namespace itself lives on while any
    /// process or handle still uses it; a missing name is not an error.
    pub fn delete_named(name: &str) -> Result<()> {
        let target = Path::new(NAMED_NETNS_DIR).join(name);
        let err = |source| NetlinkError::Netns {
            path: target.display().to_string(),
            source,
        };
        match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(err(e.into())),
        }
        match fs::remove_file(&target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the calling thread inside this namespace, then returns
    /// the thread to where it was.
    ///
    /// # Panics
    /// If the thread cannot be switched back. Carrying on in the wrong
    /// namespace would program the wrong kernel state, so that is fatal.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let origin = NetNs::current()?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetlinkError::Netns {
            path: self.path.display().to_string(),
            source: e.into(),
        })?;
        let out = f();
        if let Err(e) = setns(origin.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            panic!("cannot return to the original network namespace: {e}");
        }
        Ok(out)
    }

    /// The namespace's identity (device and inode of the nsfs file): two
    /// handles refer to the same namespace exactly when these are equal.
    pub fn id(&self) -> Result<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        let meta = self.file.metadata().map_err(|source| NetlinkError::Netns {
            path: self.path.display().to_string(),
            source,
        })?;
        Ok((meta.dev(), meta.ino()))
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// Makes `dir` a shared mount point before a namespace is mounted in it,
/// as `ip netns add` and podman do.
///
/// If `dir` is a plain directory when iproute2 first adds a namespace, it
/// binds the directory onto itself (recursively, copying the mounts already
/// there) and every later unmount sees only the copies: unmounting a copy
/// leaves the original mounted underneath, and the name can never be
/// removed again (EBUSY). Doing the same step first, and under a lock so
/// two of our processes never both bind, means the tools all work on one
/// mount. Shared, so namespaces mounted here also appear in mount
/// namespaces cloned from this one (runtimes' containers).
fn share_named_dir(dir: &Path) -> io::Result<()> {
    let make_shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    if make_shared().is_ok() {
        return Ok(());
    }
    // EINVAL: not a mount point yet. Serialised with our other processes,
    // so the check and the bind happen once.
    let guard = File::open(dir)?;
    nix::fcntl::Flock::lock(guard, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io::Error::from(e))
        .and_then(|_locked| match make_shared() {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EINVAL) => {
                mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )?;
                make_shared().map_err(io::Error::from)
            }
            Err(e) => Err(e.into()),
        })
}
