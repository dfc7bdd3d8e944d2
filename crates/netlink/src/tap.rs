//! Tap devices, for guests (VMs, unikernels) that sit behind a pod's eth0.
//!
//! The kernel refuses to create a tap over rtnetlink: taps are made through
//! `/dev/net/tun` ioctls, and a tap is created in the network namespace of
//! whoever opens that file. So [`create_tap`] must run inside the pod's
//! namespace (`NetNs::run`). Made persistent, the tap outlives our file
//! descriptor until a VMM opens it by name; it is removed over netlink like
//! any other link.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

use crate::error::{NetlinkError, Result};

const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `_IOW('T', 202, int)` and friends from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;

/// How to make a tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSpec {
    pub name: String,
    /// Offload metadata in front of every frame (what virtio-net expects).
    pub vnet_hdr: bool,
    /// The user and group allowed to open it (a VMM that runs unprivileged).
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl(
    fd: i32,
    request: libc::c_ulong,
    arg: libc::c_ulong,
    what: &str,
    name: &str,
) -> Result<()> {
    // SAFETY: the requests used here take an integer argument (or, for
    // TUNSETIFF, a pointer to an IfReq that outlives the call) on an open
    // /dev/net/tun descriptor.
    let r = unsafe { libc::ioctl(fd, request, arg) };
    if r < 0 {
        return Err(NetlinkError::Kernel {
            op: format!("{what} {name}"),
            errno: io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ext_ack: None,
        });
    }
    Ok(())
}

/// Creates a persistent single-queue tap in the calling thread's network
/// namespace; EEXIST if the name is taken (TUNSETIFF would otherwise
/// quietly attach to an existing tap of that name).
pub fn create_tap(spec: &TapSpec) -> Result<()> {
    if crate::Netlink::new()?.link_by_name(&spec.name)?.is_some() {
        return Err(NetlinkError::Kernel {
            op: format!("create tap {}", spec.name),
            errno: libc::EEXIST,
            ext_ack: None,
        });
    }
    if spec.name.is_empty() || spec.name.len() >= libc::IFNAMSIZ {
        return Err(NetlinkError::Kernel {
            op: format!("create tap {:?}", spec.name),
            errno: libc::EINVAL,
            ext_ack: Some("the name must have 1 to 15 bytes".into()),
        });
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|source| NetlinkError::Netns {
            path: "/dev/net/tun".into(),
            source,
        })?;
    let fd = file.as_raw_fd();
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI | if spec.vnet_hdr { IFF_VNET_HDR } else { 0 },
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(spec.name.bytes()) {
        *dst = src as libc::c_char;
    }
    ioctl(
        fd,
        TUNSETIFF,
        &mut req as *mut IfReq as libc::c_ulong,
        "create tap",
        &spec.name,
    )?;
    if let Some(uid) = spec.owner {
        ioctl(
            fd,
            TUNSETOWNER,
            uid as libc::c_ulong,
            "set owner of tap",
            &spec.name,
        )?;
    }
    if let Some(gid) = spec.group {
        ioctl(
            fd,
            TUNSETGROUP,
            gid as libc::c_ulong,
            "set group of tap",
            &spec.name,
        )?;
    }
    // Persistent: it stays when this descriptor closes, for the VMM to
    // open by name.
    ioctl(fd, TUNSETPERSIST, 1, "make tap persistent", &spec.name)?;
    Ok(())
}
