//! Errors from the netlink layer.
//!
//! The kernel's answer is kept as an errno plus, where the kernel gave one, its
//! extended-ack text ("Invalid prefix for given prefix length", ...), because
//! that text is usually the fastest way for an operator to see what went wrong.

use std::io;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    /// Opening, sending on or receiving from the netlink socket failed.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),

    /// The kernel refused a request.
    #[error("{op}: {}{}", io::Error::from_raw_os_error(*errno), ext_ack.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kernel {
        /// What was asked, in words ("create veth tw1234 (peer eth0)").
        op: String,
        /// The positive errno the kernel answered with.
        errno: i32,
        /// The kernel's extended acknowledgement message, when present.
        ext_ack: Option<String>,
    },

    /// A kernel message could not be decoded.
    #[error("netlink decode: {0}")]
    Decode(String),

    /// An object the caller named does not exist.
    #[error("{what} not found")]
    NotFound { what: String },

    /// Entering or opening a network namespace failed.
    #[error("network namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: io::Error,
    },

    /// The kernel refused to load a BPF program; `log` is its verifier's
    /// explanation.
    #[error("loading BPF program {name}: {source}{}", if log.is_empty() { String::new() } else { format!(" (verifier: {log})") })]
    BpfLoad {
        name: String,
        #[source]
        source: io::Error,
        log: String,
    },

    /// Reading or writing a sysctl failed.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
}

impl NetlinkError {
    /// The kernel's errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// True when the object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when the object (or the device it refers to) is gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, NetlinkError::NotFound { .. })
            || matches!(
                self.errno(),
                Some(libc::ENODEV)
                    | Some(libc::ENOENT)
                    | Some(libc::ESRCH)
                    | Some(libc::EADDRNOTAVAIL)
            )
    }
}

pub type Result<T> = std::result::Result<T, NetlinkError>;
