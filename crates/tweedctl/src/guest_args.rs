//! `tweedctl guest-args`: the boot arguments of one guest, rendered from
//! the record the plugin wrote at ADD.

use std::path::PathBuf;

use clap::Args;
use thiserror::Error;
use tweed_guest::record::{DEFAULT_STATE_DIR, RecordError};
use tweed_guest::{Format, GuestRecord, RenderError, RenderOptions, dns};

#[derive(Args, Debug)]
pub struct GuestArgs {
    /// The pod's container (sandbox) ID, as the runtime passed it in
    /// CNI_CONTAINERID.
    #[arg(long = "container")]
    container: String,
    /// The pod interface the guest stands behind (CNI_IFNAME).
    #[arg(long, default_value = "eth0")]
    ifname: String,
    /// Where the plugin keeps guest records (its `guest.stateDir`).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// linux, unikraft, rumprun, solo5 (or mirage), firecracker, mewz, json.
    #[arg(long, value_parser = parse_format)]
    format: Format,
    /// Take DNS from this resolv.conf instead of the record (loopback
    /// servers are mapped to the attachment's DNS forward, if it has one).
    #[arg(long)]
    resolv_conf: Option<PathBuf>,
    /// Leave name servers out.
    #[arg(long)]
    no_dns: bool,
    /// The interface name inside the guest (each format has a default).
    #[arg(long)]
    guest_ifname: Option<String>,
}

fn parse_format(s: &str) -> Result<Format, tweed_guest::render::UnknownFormat> {
    s.parse()
}

#[derive(Debug, Error)]
pub enum GuestArgsError {
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("--resolv-conf {path}: {source}")]
    ResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--resolv-conf: {0}")]
    Dns(#[from] dns::DnsError),
    #[error("--format {format}: {source}")]
    Render { format: Format, source: RenderError },
    #[error("--container: {0}")]
    BadContainer(String),
}

pub fn run(args: GuestArgs) -> Result<(), GuestArgsError> {
    // The ID becomes part of a path: refuse anything that could leave the
    // records directory.
    if args.container.is_empty() || args.container.contains('/') || args.container.starts_with('.')
    {
        return Err(GuestArgsError::BadContainer(format!(
            "{:?} is not a container ID",
            args.container
        )));
    }
    if args.ifname.is_empty() || args.ifname.contains('/') {
        return Err(GuestArgsError::BadContainer(format!(
            "--ifname {:?} is not an interface name",
            args.ifname
        )));
    }
    let mut record = GuestRecord::read(&args.state_dir, &args.container, &args.ifname)?;
    if let Some(path) = &args.resolv_conf {
        let text = std::fs::read_to_string(path).map_err(|source| GuestArgsError::ResolvConf {
            path: path.clone(),
            source,
        })?;
        let parsed = dns::parse_resolv_conf(&text);
        let local = record.localhost.as_ref().map(|l| l.address);
        let forward = record.localhost.as_ref().and_then(|l| l.dns_forward);
        record.dns = dns::map_with_existing_forward(&parsed, local, forward)?;
    }
    let opts = RenderOptions {
        no_dns: args.no_dns,
        guest_ifname: args.guest_ifname.clone(),
    };
    let out = tweed_guest::render(&record, args.format, &opts).map_err(|source| {
        GuestArgsError::Render {
            format: args.format,
            source,
        }
    })?;
    outln!("{out}");
    Ok(())
}
