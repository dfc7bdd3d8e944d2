//! Free TCP ports on 127.0.0.1 for servers the tests start.
//!
//! A port is taken from below the kernel's ephemeral range (32768 and up),
//! so no outgoing connection can grab it between the check and the
//! server's bind; what another test binary's server may still grab in
//! that window is handled by the caller starting again on fresh ports.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A port nothing listens on now, different from every other this
/// process was given.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each process starts somewhere else, so that parallel test binaries
    // do not walk the same sequence; within one, a step prime to COUNT
    // visits every port once.
    static SEED: OnceLock<u32> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        std::process::id().wrapping_mul(7919)
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
    }) % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % COUNT;
        let port = FIRST + (seed + n * 37) % COUNT;
        let port = u16::try_from(port).expect("ports stay below 32000");
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free TCP port on 127.0.0.1 in {FIRST}..{}",
        FIRST + COUNT
    );
}
