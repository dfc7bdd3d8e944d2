//! Guest attachments: what a pod asks for (config `guest` section,
//! `runtimeConfig`, pod annotations, `CNI_ARGS`) and the record the plugin
//! leaves for `tweedctl guest-args`.

use tweed_cni::env::validate_ifname;
use tweed_cni::{CniArgs, Command};
use tweed_guest::{Format, GuestRecord, RenderOptions, render};
use tweed_plugin::conf::Conf;
use tweed_plugin::guest::request::{Sources, resolve};

const IFNAME: &str = "eth0";

/// First line `CNI_ARGS`, the rest the network configuration: the merged
/// guest request names a valid device of its own.
pub fn request(data: &[u8]) {
    let (args, config) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let Some(Ok(args)) = crate::text(args).map(CniArgs::parse) else {
        return;
    };
    let Ok(conf) = Conf::parse(config, Command::Add) else {
        return;
    };
    let Ok(Some(req)) = resolve(&Sources {
        section: conf.guest.as_ref(),
        runtime_config: &conf.net.runtime_config.extra,
        args: &args.other,
        container_id: "c0",
        ifname: IFNAME,
    }) else {
        return;
    };
    assert!(
        validate_ifname(&req.device).is_ok(),
        "device {:?}",
        req.device
    );
    assert_ne!(req.device, IFNAME, "the guest device is not CNI_IFNAME");
}

/// A guest record file: it is written back the same, and every boot
/// argument format renders it or says why not (never a panic).
pub fn record(data: &[u8]) {
    let Ok(record) = GuestRecord::parse(data) else {
        return;
    };
    let written = serde_json::to_vec(&record).expect("records serialise");
    let again = GuestRecord::parse(&written).expect("a written record parses");
    assert_eq!(again, record);
    for format in Format::ALL {
        for no_dns in [false, true] {
            let opts = RenderOptions {
                no_dns,
                guest_ifname: None,
            };
            let _ = render(&record, format, &opts);
        }
    }
}
