//! The moment a lease file appears in the file store: inotify on the
//! store's `subnets/` directory, read by a thread of its own (real-time
//! priority, so the stamp is not late under load). The store writes a
//! hidden temporary file and renames it into place, so the lease appears
//! with `IN_MOVED_TO` under its key.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct LeaseWatch {
    handle: JoinHandle<Option<Instant>>,
}

impl LeaseWatch {
    /// Watches `dir` for `name` from now on (the watch is in place when
    /// this returns) for at most `deadline`.
    pub fn start(dir: &Path, name: &str, deadline: Duration) -> LeaseWatch {
        // SAFETY: inotify_init1 with constant flags; checked below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0, "inotify: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = CString::new(dir.as_os_str().as_bytes()).expect("path");
        // SAFETY: valid descriptor and NUL-terminated path.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                path.as_ptr(),
                libc::IN_MOVED_TO | libc::IN_CREATE,
            )
        };
        assert!(
            wd >= 0,
            "inotify watch {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        let name = name.as_bytes().to_vec();
        let handle = std::thread::spawn(move || {
            crate::realtime();
            let until = Instant::now() + deadline;
            let mut buf = vec![0u8; 8192];
            while Instant::now() < until {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                let at = Instant::now();
                // SAFETY: buf is valid for its length.
                let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n > 0 && names(&buf[..n as usize]).any(|n| n == name.as_slice()) {
                    return Some(at);
                }
            }
            None
        });
        LeaseWatch { handle }
    }

    /// When the lease appeared, if it did.
    pub fn finish(self) -> Option<Instant> {
        self.handle.join().expect("lease watch thread")
    }
}

/// The names in a buffer of `inotify_event`s (NUL padding removed).
fn names(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
        let end = (16 + len).min(buf.len());
        let name = &buf[16..end];
        buf = &buf[end..];
        Some(&name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())])
    })
}
