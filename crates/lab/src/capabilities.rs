//! The Linux capabilities tweedd runs with. The DaemonSet in
//! `deploy/tweed.yaml` drops every capability and adds these; the lab
//! starts its agents with the same set (and no other), so every lab test is
//! also a test that the set is enough.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// tweedd's capabilities, by name and number (`linux/capability.h`):
/// NET_ADMIN for netlink and nftables, SYS_ADMIN for setns() into pod
/// namespaces (wires), BPF for the tc programs of VLAN segments,
/// NET_BIND_SERVICE for the DHCP server port of urunc guests.
pub const AGENT: &[(&str, u32)] = &[
    ("NET_ADMIN", 12),
    ("SYS_ADMIN", 21),
    ("BPF", 39),
    ("NET_BIND_SERVICE", 10),
];

/// The highest capability number this kernel knows.
pub fn last_cap() -> io::Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("cap_last_cap: {e}")))
}

/// Makes `cmd` run with no capability but `keep`: every other one is
/// dropped from its bounding set between fork and exec, so a root process
/// gets only `keep` when it execs (as in a container with `drop: ["ALL"]`).
pub fn keep_only(cmd: &mut Command, keep: &[u32]) -> io::Result<()> {
    let last = last_cap()?;
    let drop: Vec<u32> = (0..=last).filter(|c| !keep.contains(c)).collect();
    // SAFETY: prctl(2) is async-signal-safe; `drop` was allocated before
    // the fork and is only read in the child.
    unsafe {
        cmd.pre_exec(move || {
            for &cap in &drop {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

/// The effective capabilities of a running process, as a bit mask
/// (`CapEff` in `/proc/<pid>/status`).
pub fn effective(pid: i32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff line"))?;
    u64::from_str_radix(hex.trim(), 16)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("CapEff: {e}")))
}

/// The bit mask of `caps`.
pub fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest and the lab name the same set, and the manifest drops
    /// every other capability.
    #[test]
    fn the_daemonset_asks_for_exactly_the_agent_capabilities() {
        let manifest = include_str!("../../../deploy/tweed.yaml");
        let names: Vec<String> = AGENT.iter().map(|(n, _)| format!("{n:?}")).collect();
        let add = format!("add: [{}]", names.join(", "));
        assert!(manifest.contains(&add), "deploy/tweed.yaml lacks {add}");
        assert!(
            manifest.contains(r#"drop: ["ALL"]"#),
            "deploy/tweed.yaml must drop every other capability"
        );
    }
}
