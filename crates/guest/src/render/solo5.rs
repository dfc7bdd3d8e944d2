//! Solo5 / MirageOS unikernels: the network keys of mirage-runtime
//! (`--ipv4=<cidr>`, `--ipv4-gateway=`, `--ipv6=<cidr>`, `--ipv6-gateway=`,
//! `--ipv6-only=true`) and the resolver of dns-client (`--resolver=udp:<ip>`,
//! repeatable). A MirageOS unikernel refuses arguments it does not
//! declare, so IPv6 keys appear only for IPv6 pods and `--resolver` can be
//! left out with `--no-dns`.

use std::net::IpAddr;

use super::{RenderError, RenderOptions};
use crate::record::GuestRecord;

pub fn render(record: &GuestRecord, opts: &RenderOptions) -> Result<String, RenderError> {
    let mut args = Vec::new();
    let v4 = record.ipv4();
    let v6 = record.ipv6();
    if v4.is_none() && v6.is_none() {
        return Err(RenderError::Invalid(
            "the solo5 format needs an address, and this guest has none".into(),
        ));
    }
    if let Some((net, gw)) = v4 {
        args.push(format!("--ipv4={net}"));
        if let Some(gw) = gw {
            args.push(format!("--ipv4-gateway={gw}"));
        }
    }
    if let Some((net, gw)) = v6 {
        args.push(format!("--ipv6={net}"));
        if let Some(gw) = gw {
            args.push(format!("--ipv6-gateway={gw}"));
        }
        if v4.is_none() {
            args.push("--ipv6-only=true".into());
        }
    }
    if !opts.no_dns {
        for ns in &record.dns.nameservers {
            match ns {
                IpAddr::V4(a) => args.push(format!("--resolver=udp:{a}")),
                IpAddr::V6(a) => args.push(format!("--resolver=udp:[{a}]")),
            }
        }
    }
    Ok(args.join(" "))
}
