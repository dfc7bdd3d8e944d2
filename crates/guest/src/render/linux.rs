//! Linux `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`
//! (Documentation/admin-guide/nfs/nfsroot.rst). IPv4 only; the kernel
//! has no MTU field, so the MTU stays in the record (json format).

use super::{Format, RenderError, RenderOptions, ipv4_dns, join_fields, require_ipv4};
use crate::record::GuestRecord;

pub fn render(record: &GuestRecord, opts: &RenderOptions) -> Result<String, RenderError> {
    Ok(format!("ip={}", ip_value(record, opts, Format::Linux)?))
}

/// The value after `ip=` (shared with the Firecracker fragment).
pub fn ip_value(
    record: &GuestRecord,
    opts: &RenderOptions,
    format: Format,
) -> Result<String, RenderError> {
    let (net, gw) = require_ipv4(record, format)?;
    let dns = ipv4_dns(record, opts);
    let field = |v: Option<String>| v.unwrap_or_default();
    Ok(join_fields(&[
        net.addr().to_string(),
        String::new(),
        field(gw.map(|g| g.to_string())),
        net.netmask().to_string(),
        field(record.hostname.clone()),
        opts.guest_ifname.clone().unwrap_or_else(|| "eth0".into()),
        "off".into(),
        field(dns.first().map(|d| d.to_string())),
        field(dns.get(1).map(|d| d.to_string())),
    ]))
}
