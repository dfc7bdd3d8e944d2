//! Mewz: `ip=<cidr> gateway=<gw>`. Mewz has no DNS argument.

use super::{Format, RenderError, RenderOptions, require_ipv4};
use crate::record::GuestRecord;

pub fn render(record: &GuestRecord, _opts: &RenderOptions) -> Result<String, RenderError> {
    let (net, gw) = require_ipv4(record, Format::Mewz)?;
    let mut out = format!("ip={net}");
    if let Some(gw) = gw {
        out.push_str(&format!(" gateway={gw}"));
    }
    Ok(out)
}
