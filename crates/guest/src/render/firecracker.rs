//! Firecracker: a fragment of its `--config-file` JSON — the
//! `network-interfaces` entry for the tap (guest MAC = the pod's MAC) and
//! `boot-source.boot_args` with the kernel's `ip=` — to merge into the
//! VM's configuration. Firecracker attaches taps only.

use serde_json::json;

use super::{Format, RenderError, RenderOptions, linux};
use crate::record::{GuestMode, GuestRecord};

pub fn render(record: &GuestRecord, opts: &RenderOptions) -> Result<String, RenderError> {
    if record.mode != GuestMode::Tap {
        return Err(RenderError::NeedsTap {
            format: Format::Firecracker,
            mode: record.mode.as_str(),
        });
    }
    let ip = linux::ip_value(record, opts, Format::Firecracker)?;
    let fragment = json!({
        "boot-source": { "boot_args": format!("ip={ip}") },
        "network-interfaces": [{
            "iface_id": opts.guest_ifname.clone().unwrap_or_else(|| "eth0".into()),
            "guest_mac": record.mac,
            "host_dev_name": record.device,
        }],
    });
    Ok(serde_json::to_string_pretty(&fragment).expect("json"))
}
