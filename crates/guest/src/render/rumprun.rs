//! Rumprun: the `net` block of its JSON configuration (rumprun
//! doc/config.md): `if`, `cloner`, `type`, `method`, `addr`, `mask` (a
//! prefix length), `gw`. Rumprun reads nameservers from the image's
//! /etc/resolv.conf, not from this block. IPv4 only.

use serde_json::json;

use super::{Format, RenderError, RenderOptions, require_ipv4};
use crate::record::GuestRecord;

pub fn render(record: &GuestRecord, opts: &RenderOptions) -> Result<String, RenderError> {
    let (net, gw) = require_ipv4(record, Format::Rumprun)?;
    let mut block = json!({
        // The Solo5 network device's name; `vioif0` under virtio.
        "if": opts.guest_ifname.clone().unwrap_or_else(|| "ukvmif0".into()),
        "cloner": "True",
        "type": "inet",
        "method": "static",
        "addr": net.addr().to_string(),
        "mask": net.prefix_len().to_string(),
    });
    if let Some(gw) = gw {
        block["gw"] = json!(gw.to_string());
    }
    Ok(json!({ "net": block }).to_string())
}
