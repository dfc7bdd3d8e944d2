//! host-local's on-disk IPAM store: a file per reserved address, named by
//! the address, holding `<containerID>\r\n<ifname>`.

use tweed_ipam::Reservation;
use tweed_ipam::store::reservation_file_ip;

/// First line a file name in the store directory, the rest its content.
/// A name that counts as an address is that address's one and only name
/// (two names for one address would give it two owners), and the content
/// the store writes for a holder reads back as that holder.
pub fn store_file(data: &[u8]) {
    let (name, content) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Some(name) = crate::text(name) else {
        return;
    };
    let Some(ip) = reservation_file_ip(name) else {
        return;
    };
    assert_eq!(
        ip.to_string(),
        name,
        "file {name:?} counts as the reservation of {ip}, whose file is {ip}"
    );
    let r = Reservation::parse(ip, content);
    assert_eq!(r.ip, ip);
    if let Some(ifname) = &r.ifname {
        let written = format!("{}\r\n{ifname}", r.container_id);
        assert_eq!(Reservation::parse(ip, written.as_bytes()), r);
    }
}
