//! The Linux capabilities tweedd needs, checked once at start. Without
//! NET_ADMIN nothing can be programmed: every netlink request would answer
//! "Operation not permitted" and the agent would retry forever, holding a
//! lease it cannot serve. So it refuses to start and names the capability.
//! SYS_ADMIN, BPF and NET_BIND_SERVICE serve some features only; a warning
//! names what will not work without them.

use thiserror::Error;

/// A capability tweedd uses (numbers from `linux/capability.h`).
struct Needed {
    name: &'static str,
    number: u32,
    /// What it is for, in words.
    for_what: &'static str,
    /// Whether tweedd can do anything useful without it.
    required: bool,
}

const NET_ADMIN: u32 = 12;
const SYS_ADMIN: u32 = 21;
const BPF: u32 = 39;
const NET_BIND_SERVICE: u32 = 10;

const NEEDED: &[Needed] = &[
    Needed {
        name: "NET_ADMIN",
        number: NET_ADMIN,
        for_what: "programming links, routes, neighbours, FDB entries and nftables",
        required: true,
    },
    Needed {
        name: "SYS_ADMIN",
        number: SYS_ADMIN,
        for_what: "entering pod network namespaces to cable wires, and probing kernel features",
        required: false,
    },
    Needed {
        name: "BPF",
        number: BPF,
        for_what: "loading the tc programs of segments with a VLAN",
        required: false,
    },
    Needed {
        name: "NET_BIND_SERVICE",
        number: NET_BIND_SERVICE,
        for_what: "answering urunc guests' DHCP (UDP port 67) with their DNS and MTU",
        required: false,
    },
];

/// NET_ADMIN is missing.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "tweedd runs without CAP_{name}, which it needs for {for_what}; add it to the \
     container's capabilities (deploy/tweed.yaml adds NET_ADMIN, SYS_ADMIN, BPF and \
     NET_BIND_SERVICE)"
)]
pub struct MissingCapability {
    pub name: &'static str,
    pub for_what: &'static str,
}

/// Checks this process's effective capabilities: an error when a required
/// one is missing, a warning logged for each optional one.
pub fn check() -> Result<(), MissingCapability> {
    let mask = match effective() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("cannot read this process's capabilities ({e}); not checked");
            return Ok(());
        }
    };
    let (missing, warnings) = judge(mask);
    for w in warnings {
        tracing::warn!("{w}");
    }
    missing.map_or(Ok(()), Err)
}

/// What `mask` lacks: the first required capability, and a warning for
/// every optional one.
fn judge(mask: u64) -> (Option<MissingCapability>, Vec<String>) {
    let has = |c: u32| mask & (1 << c) != 0;
    let mut missing = None;
    let mut warnings = Vec::new();
    for n in NEEDED.iter().filter(|n| !has(n.number)) {
        // Before Linux 5.8 there is no CAP_BPF and SYS_ADMIN covers it.
        if n.number == BPF && has(SYS_ADMIN) {
            continue;
        }
        if n.required {
            missing.get_or_insert(MissingCapability {
                name: n.name,
                for_what: n.for_what,
            });
        } else {
            warnings.push(format!(
                "running without CAP_{}: {} will fail",
                n.name, n.for_what
            ));
        }
    }
    (missing, warnings)
}

/// The effective capability mask (`CapEff` of `/proc/self/status`).
fn effective() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| std::io::Error::other("no CapEff line"))?;
    u64::from_str_radix(hex.trim(), 16).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: u64 = (1 << NET_ADMIN) | (1 << SYS_ADMIN) | (1 << BPF) | (1 << NET_BIND_SERVICE);

    #[test]
    fn the_four_are_enough_and_net_admin_is_required() {
        assert_eq!(judge(ALL), (None, vec![]));
        let (missing, _) = judge(ALL & !(1 << NET_ADMIN));
        let e = missing.expect("NET_ADMIN is required");
        assert!(e.to_string().contains("CAP_NET_ADMIN"), "{e}");
    }

    #[test]
    fn optional_ones_only_warn() {
        let (missing, warnings) = judge(1 << NET_ADMIN);
        assert_eq!(missing, None);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("CAP_SYS_ADMIN") && warnings[0].contains("wires"));
        assert!(warnings[1].contains("CAP_BPF") && warnings[1].contains("VLAN"));
        assert!(warnings[2].contains("CAP_NET_BIND_SERVICE") && warnings[2].contains("DHCP"));
        // SYS_ADMIN stands in for BPF on kernels older than 5.8.
        let (_, warnings) = judge((1 << NET_ADMIN) | (1 << SYS_ADMIN) | (1 << NET_BIND_SERVICE));
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
