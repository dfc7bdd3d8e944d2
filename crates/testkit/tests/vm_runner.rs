//! The VM runner itself: a job's exit status and output come back, a
//! failing job is reported as failing, and the VM's kernel has what the
//! runner is for (SRv6 encap and seg6local, Geneve, WireGuard) whatever the
//! host lacks.

use tweed_testkit::vm::Job;

fn job(script: &str) -> tweed_testkit::vm::JobOutcome {
    let argv = ["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    Job::new(std::path::Path::new("/"), &argv).run()
}

#[test]
fn the_vm_runs_a_job_reports_its_status_and_has_the_features() {
    tweed_testkit::require_root();
    let failing = job("echo about-to-fail; exit 3");
    assert_eq!(failing.status, Some(3), "{}", failing.output);
    assert!(
        failing.output.contains("about-to-fail"),
        "{}",
        failing.output
    );

    let probe = job("set -e; ip netns add p; ip -n p link set lo up; \
         ip -n p -6 addr add fd00:5e6::1/64 dev lo; \
         ip -n p -6 route add fd00:5e6:1::/64 encap seg6 mode encap segs fd00:5e6::2 dev lo; \
         ip -n p -6 route add fd00:5e6:2::/128 encap seg6local action End.DX4 nh4 10.244.0.1 dev lo; \
         ip -n p link add g0 type geneve id 7 remote 198.18.0.1; \
         ip -n p link add wg0 type wireguard; \
         ip -n p -d -6 route; ip -n p -d link show g0; ip -n p -d link show wg0; \
         test \"$TWEED_IN_VM_RUNNER\" = 1; echo features-ok");
    assert_eq!(probe.status, Some(0), "{}", probe.output);
    for expected in [
        "encap seg6 mode encap",
        "seg6local action End.DX4",
        "geneve id 7",
        "wireguard",
        "features-ok",
    ] {
        assert!(
            probe.output.contains(expected),
            "no {expected:?} in:\n{}",
            probe.output
        );
    }
}
