//! The header lines of a benchmark's report: the machine it ran on, its
//! load, the date, tools' versions.

use std::process::Command;

fn first_line(cmd: &[&str]) -> String {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Kernel, CPUs, CPU model, memory.
pub fn machine_line() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| format!("{} GiB RAM", kib / 1024 / 1024))
        .unwrap_or_default();
    format!(
        "machine: Linux {}, nproc {}, {model}, {mem}",
        first_line(&["uname", "-r"]),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
    )
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn tool_version(cmd: &[&str]) -> String {
    first_line(cmd)
}

/// The date and time in UTC for the report header.
pub fn today() -> String {
    first_line(&["date", "-u", "+%Y-%m-%d %H:%M UTC"])
}
