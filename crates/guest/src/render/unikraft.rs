//! Unikraft (lib/uknetdev): `netdev.ip=<cidr>:<gw>:<dns0>:<dns1>:<hostname>:<domain>`.
//! urunc hard-codes `/24` and `8.8.8.8` here; the record's prefix and
//! servers are used instead.

use super::{Format, RenderError, RenderOptions, ipv4_dns, join_fields, require_ipv4};
use crate::record::GuestRecord;

pub fn render(record: &GuestRecord, opts: &RenderOptions) -> Result<String, RenderError> {
    let (net, gw) = require_ipv4(record, Format::Unikraft)?;
    let dns = ipv4_dns(record, opts);
    let domain = if opts.no_dns {
        None
    } else {
        record.dns.local_domain().map(str::to_string)
    };
    let fields = [
        net.to_string(),
        gw.map(|g| g.to_string()).unwrap_or_default(),
        dns.first().map(|d| d.to_string()).unwrap_or_default(),
        dns.get(1).map(|d| d.to_string()).unwrap_or_default(),
        record.hostname.clone().unwrap_or_default(),
        domain.unwrap_or_default(),
    ];
    Ok(format!("netdev.ip={}", join_fields(&fields)))
}
