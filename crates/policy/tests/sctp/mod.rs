//! SCTP echo servers and connects between the fixture's pods. std has no
//! SCTP: one-to-one SCTP sockets through libc, which read and write like
//! TCP ones.

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tweed_testkit::bridged_pods::in_ns;

fn socket() -> OwnedFd {
    // SAFETY: plain socket(2); the descriptor is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    assert!(fd >= 0, "SCTP socket: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

const LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// An SCTP echo server on `addr` in namespace `ns`.
pub fn listen(ns: &str, addr: SocketAddrV4) {
    let fd = in_ns(ns, socket);
    let sa = sockaddr(addr);
    // SAFETY: bind and listen on our socket with a valid sockaddr_in.
    let ok = unsafe {
        libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), LEN) == 0
            && libc::listen(fd.as_raw_fd(), 16) == 0
    };
    assert!(
        ok,
        "SCTP listen {addr}: {}",
        std::io::Error::last_os_error()
    );
    std::thread::spawn(move || {
        loop {
            // SAFETY: accept on our listening socket; no address wanted.
            let conn =
                unsafe { libc::accept(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut()) };
            if conn < 0 {
                return;
            }
            // SAFETY: the accepted descriptor is ours alone.
            let mut s = File::from(unsafe { OwnedFd::from_raw_fd(conn) });
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).is_ok() && s.write_all(&b).is_ok() {}
            });
        }
    });
}

/// Whether a connect from namespace `ns` to `to` is made within 700 ms
/// and echoes a byte.
pub fn passes(ns: &str, to: SocketAddrV4) -> bool {
    let fd = in_ns(ns, socket);
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 700_000,
    };
    let sa = sockaddr(to);
    // SAFETY: socket options and connect on our socket with valid
    // pointers and sizes. SO_SNDTIMEO bounds a blocking connect.
    let connected = unsafe {
        for opt in [libc::SO_SNDTIMEO, libc::SO_RCVTIMEO] {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), LEN) == 0
    };
    if !connected {
        return false;
    }
    let mut s = File::from(fd);
    let mut b = [0u8; 1];
    s.write_all(b"x").is_ok() && s.read_exact(&mut b).is_ok() && &b == b"x"
}
