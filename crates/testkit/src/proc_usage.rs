//! What a process has cost so far, from /proc: CPU time (its own, and
//! that of the children it waited for, such as the `nft` runs of tweedd)
//! and resident memory now and at its peak.

/// One reading of `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct ProcUsage {
    /// utime + stime, ms.
    pub own_cpu_ms: f64,
    /// cutime + cstime: children that exited and were waited for, ms.
    pub children_cpu_ms: f64,
    /// VmRSS, MiB.
    pub rss_mib: f64,
    /// VmHWM (the peak of VmRSS since the process started), MiB.
    pub peak_rss_mib: f64,
}

impl ProcUsage {
    /// Reads process `pid` now; panics when it is gone.
    pub fn read(pid: u32) -> ProcUsage {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
        // The command name (field 2) may hold spaces; count after it.
        let after_comm = &stat[stat.rfind(')').expect("stat's (comm)") + 2..];
        let fields: Vec<f64> = after_comm
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(f64::NAN))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let ms = |i: usize| fields[i] * 1000.0 / ticks_per_s;
        // Fields 14-17 of stat(5) (utime, stime, cutime, cstime) are 11-14
        // after the state (field 3).
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let mib = |key: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("/proc/{pid}/status has no {key}"))
                / 1024.0
        };
        ProcUsage {
            own_cpu_ms: ms(11) + ms(12),
            children_cpu_ms: ms(13) + ms(14),
            rss_mib: mib("VmRSS:"),
            peak_rss_mib: mib("VmHWM:"),
        }
    }

    /// Own and children's CPU, ms.
    pub fn cpu_ms(&self) -> f64 {
        self.own_cpu_ms + self.children_cpu_ms
    }
}

/// The whole machine's CPU time from the first line of `/proc/stat`, in
/// clock ticks: how busy all CPUs were between two readings.
#[derive(Debug, Clone, Copy)]
pub struct HostCpu {
    busy: u64,
    total: u64,
}

impl HostCpu {
    /// Reads `/proc/stat` now; panics when it cannot.
    pub fn read() -> HostCpu {
        let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .expect("/proc/stat starts with the cpu line")
            .split_whitespace()
            .map(|f| f.parse().expect("a tick count"))
            .collect();
        // user nice system idle iowait irq softirq steal [guest guest_nice]:
        // guest time is already counted in user, so it is left out.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks[3] + ticks[4];
        HostCpu {
            busy: total - idle,
            total,
        }
    }

    /// The share of all CPUs' time that was busy since `earlier` (0-1).
    pub fn busy_since(&self, earlier: &HostCpu) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64
    }
}
