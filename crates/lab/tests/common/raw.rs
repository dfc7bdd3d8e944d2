//! Raw Ethernet frames through AF_PACKET sockets, inside a namespace.

use std::time::Duration;

use tweed_netlink::NetNs;

fn ifindex(name: &str) -> i32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(i > 0, "no interface {name}");
    i as i32
}

/// A bound packet socket, opened inside `netns`.
fn socket(netns: &str, ifname: &str, ethertype: u16) -> i32 {
    let ns = NetNs::named(netns).expect("netns");
    let ifname = ifname.to_string();
    ns.run(move || {
        let proto = ethertype.to_be() as i32;
        // SAFETY: plain socket creation; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = ifindex(&ifname);
        // SAFETY: `sll` is a valid sockaddr_ll and the length matches.
        let r = unsafe {
            libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        fd
    })
    .expect("run in netns")
}

pub struct Receiver(i32);

impl Receiver {
    pub fn open(netns: &str, ifname: &str, ethertype: u16) -> Receiver {
        Receiver(socket(netns, ifname, ethertype))
    }

    /// The payload of the first frame within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval and the length matches.
        unsafe {
            libc::setsockopt(
                self.0,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        let mut buf = [0u8; 2048];
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n > 14).then(|| buf[14..n as usize].to_vec())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The source MAC of the frames sent here.
pub const SOURCE: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

/// One frame to `dst` with `ethertype` and `payload`, padded to 60 bytes.
pub fn frame(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&SOURCE);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame.resize(frame.len().max(60), 0);
    frame
}

/// The same with an 802.1Q tag (`vlan`) in front of `ethertype`.
pub fn tagged_frame(dst: [u8; 6], vlan: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut inner = ethertype.to_be_bytes().to_vec();
    inner.extend_from_slice(payload);
    let mut f = frame(dst, 0x8100, &vlan.to_be_bytes());
    f.truncate(16);
    f.extend_from_slice(&inner);
    f.resize(f.len().max(64), 0);
    f
}

/// Sends one frame to `dst` with `ethertype` and `payload`.
pub fn send(netns: &str, ifname: &str, dst: [u8; 6], ethertype: u16, payload: &[u8]) {
    send_frame(netns, ifname, &frame(dst, ethertype, payload));
}

/// Sends `frame` exactly as given (header included).
pub fn send_frame(netns: &str, ifname: &str, frame: &[u8]) {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let fd = socket(netns, ifname, ethertype);
    // SAFETY: `frame` is readable for its whole length.
    let n = unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
    assert_eq!(
        n as usize,
        frame.len(),
        "send: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the descriptor is ours and closed once.
    unsafe { libc::close(fd) };
}
