//! `TWEED_BENCH_VM=1`: the whole bench runs again inside the VM runner
//! (Debian's kernel under QEMU, see docs/vm-runner.md), where every
//! backend's kernel feature exists, so Geneve, WireGuard and SRv6 are
//! measured on a host whose own kernel lacks them.

use tweed_testkit::vm::{IN_VM_ENV, Job};

/// True when this process should hand the bench to the VM runner.
pub fn wanted() -> bool {
    std::env::var("TWEED_BENCH_VM").is_ok_and(|v| v == "1") && std::env::var_os(IN_VM_ENV).is_none()
}

/// Runs this bench binary, with the same arguments, inside the VM and
/// prints what it printed; panics unless it exited 0.
pub fn run() {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let cwd = std::env::current_dir().expect("the working directory");
    let mut argv = vec![exe.display().to_string()];
    argv.extend(std::env::args().skip(1));
    println!(
        "throughput: running in the VM runner (TWEED_BENCH_VM=1); its output follows when it ends"
    );
    let run = Job::new(&cwd, &argv).run();
    println!("{}", run.output);
    println!(
        "VM runner: {:.0} s, accelerator {}",
        run.elapsed.as_secs_f64(),
        std::env::var("TWEED_VM_ACCEL").unwrap_or_else(|_| "tcg".into())
    );
    assert_eq!(run.status, Some(0), "the bench failed in the VM runner");
}
