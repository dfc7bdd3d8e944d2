//! The VMM urunc starts in the container: when it has started, and the
//! guest's MAC on its command line.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tweed_netlink::MacAddr;

use super::HookError;

/// QEMU's MAC for the first NIC when none is given, as urunc starts it.
const QEMU_DEFAULT_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
/// How long urunc may take from `start` to exec'ing the VMM.
const VMM_WAIT: Duration = Duration::from_secs(30);

/// Waits until the container's process runs another binary than the
/// runtime that started this hook (our parent): urunc has exec'd the VMM.
pub fn wait_for_vmm(pid: i32) -> Result<(), HookError> {
    let exe = |p: String| std::fs::read_link(format!("/proc/{p}/exe"));
    let runtime =
        exe(std::os::unix::process::parent_id().to_string()).map_err(|e| HookError::Process {
            pid,
            why: format!("reading the runtime's binary: {e}"),
        })?;
    let start = Instant::now();
    loop {
        let now: PathBuf = exe(pid.to_string()).map_err(|e| HookError::Process {
            pid,
            why: format!("gone before its VMM started: {e}"),
        })?;
        if now != runtime {
            return Ok(());
        }
        if start.elapsed() > VMM_WAIT {
            return Err(HookError::Process {
                pid,
                why: format!(
                    "still {} after {} s: urunc never started the VMM",
                    runtime.display(),
                    VMM_WAIT.as_secs()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The guest's MAC, from the VMM's command line: QEMU's `mac=`/`macaddr=`
/// if urunc gave one, else QEMU's default for the first NIC (urunc gives
/// none to `linux` guests). Other VMMs are refused: their MAC is not known.
pub fn guest_mac(pid: i32) -> Result<MacAddr, HookError> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|e| HookError::Process {
        pid,
        why: format!("reading its command line: {e}"),
    })?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    mac_from_vmm_args(&args).map_err(|why| HookError::Process { pid, why })
}

fn mac_from_vmm_args(args: &[String]) -> Result<MacAddr, String> {
    if !args.iter().any(|a| a.contains("qemu-system")) {
        return Err(format!(
            "the VMM is not QEMU ({}): the guest's MAC is known only for QEMU",
            args.first().map(String::as_str).unwrap_or("?")
        ));
    }
    for arg in args {
        for option in arg.split(',') {
            if let Some(mac) = option
                .strip_prefix("macaddr=")
                .or_else(|| option.strip_prefix("mac="))
            {
                return mac.parse().map_err(|e| format!("QEMU's {option}: {e}"));
            }
        }
    }
    Ok(QEMU_DEFAULT_MAC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn the_guest_mac_comes_from_qemus_command_line() {
        let urunc_linux = args(
            "/usr/lib/tweed-cluster/urunc/qemu-system-x86_64 -m 256M -net nic,model=virtio -net tap,script=no,downscript=no,ifname=tap0_urunc",
        );
        assert_eq!(mac_from_vmm_args(&urunc_linux), Ok(QEMU_DEFAULT_MAC));
        let with_mac = args(
            "qemu-system-x86_64 -device virtio-net-pci,netdev=n0,mac=02:aa:bb:cc:dd:ee -netdev tap,id=n0",
        );
        assert_eq!(
            mac_from_vmm_args(&with_mac).unwrap().to_string(),
            "02:aa:bb:cc:dd:ee"
        );
        let bad = args("qemu-system-x86_64 -net nic,macaddr=zz");
        assert!(mac_from_vmm_args(&bad).unwrap_err().contains("macaddr=zz"));
        let firecracker = args("firecracker --api-sock /tmp/fc.sock");
        assert!(
            mac_from_vmm_args(&firecracker)
                .unwrap_err()
                .contains("only for QEMU")
        );
    }
}
