//! The runtime's side of the churn: what it believes about each container
//! slot, which call it makes next, and the call itself (possibly SIGKILLed
//! at a random moment).
//!
//! A runtime serialises the calls of one container, so each slot is
//! locked while a worker calls for it; different slots run in parallel.
//! After a call dies the runtime knows nothing about the attachment and
//! cleans up as kubelet does: DEL (without a cached result) until it
//! succeeds — or, now and then, it first retries the ADD, as runtimes do.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tweed_testkit::{CniOutput, TestNs};

use crate::common::Node;

/// What the runtime believes about one slot.
#[derive(Debug, Clone)]
pub enum Belief {
    /// Nothing attached (the last DEL succeeded, or never ADDed).
    Absent,
    /// ADD succeeded with this result.
    Present { id: String, result: Value },
    /// A call on this attachment died or failed: its state is unknown.
    Dirty { id: String },
}

/// One container: its pod namespace, whether its attachment carries a
/// guest, and the runtime's belief.
pub struct Slot {
    pub pod: Mutex<Option<TestNs>>,
    pub guest: bool,
    pub state: Mutex<SlotState>,
}

pub struct SlotState {
    pub belief: Belief,
    /// Attachments made in this slot so far (container IDs are
    /// `churn-<slot>-<generation>`, new for every sandbox).
    pub generation: u32,
}

/// The CNI call a worker makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Add,
    /// ADD of an attachment whose last call died, without DEL first.
    AddRetry,
    Check,
    Del,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::AddRetry => "ADD (retry)",
            Op::Check => "CHECK",
            Op::Del => "DEL",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Op::Add | Op::AddRetry => "ADD",
            Op::Check => "CHECK",
            Op::Del => "DEL",
        }
    }
}

/// The runtime's next call for a slot, given what it believes.
pub fn next_op(belief: &Belief, rng: &mut fastrand::Rng) -> Op {
    match belief {
        Belief::Absent => Op::Add,
        Belief::Present { .. } if rng.bool() => Op::Check,
        Belief::Present { .. } => Op::Del,
        Belief::Dirty { .. } if rng.u8(0..5) == 0 => Op::AddRetry,
        Belief::Dirty { .. } => Op::Del,
    }
}

/// Running mean duration of unkilled calls per command and kind of pod
/// (a guest's ADD runs nft and takes longer), in µs: the kill moment is
/// drawn from it, so kills land all over a call.
#[derive(Default)]
pub struct Durations {
    /// Indexed by [`Durations::cell`].
    us: [AtomicU64; 6],
}

impl Durations {
    fn cell(&self, op: Op, guest: bool) -> &AtomicU64 {
        let k = match op {
            Op::Add | Op::AddRetry => 0,
            Op::Check => 1,
            Op::Del => 2,
        };
        &self.us[k * 2 + usize::from(guest)]
    }

    /// The mean, or 30 ms before any call finished.
    pub fn mean(&self, op: Op, guest: bool) -> Duration {
        match self.cell(op, guest).load(Ordering::Relaxed) {
            0 => Duration::from_millis(30),
            us => Duration::from_micros(us),
        }
    }

    /// Folds in one call (an exponential mean; races only blur it).
    pub fn record(&self, op: Op, guest: bool, took: Duration) {
        let cell = self.cell(op, guest);
        let old = cell.load(Ordering::Relaxed);
        let new = took.as_micros() as u64;
        let mixed = if old == 0 { new } else { (old * 7 + new) / 8 };
        cell.store(mixed.max(1), Ordering::Relaxed);
    }
}

/// CNI_ARGS for a slot: a guest slot asks for a tap with localhost
/// plumbing (a tap, tc redirects, a route, a neighbour and an nft table
/// in the pod, and a guest record on the node).
pub fn cni_args(guest: bool) -> &'static str {
    if guest {
        "IgnoreUnknown=1;TWEED_GUEST=tap;TWEED_GUEST_PORTS=8080"
    } else {
        "IgnoreUnknown=1"
    }
}

/// The attachment a call is for.
pub struct Target<'a> {
    pub id: &'a str,
    pub pod: &'a TestNs,
    pub guest: bool,
}

/// Runs `op` for `target` on `node`, killed after `kill` when given.
/// `prev` is the cached ADD result (CHECK needs it; DEL passes it when
/// the runtime has it, as libcni does).
pub fn call(
    node: &Node,
    conf: &Value,
    op: Op,
    target: &Target,
    prev: Option<&Value>,
    kill: Option<Duration>,
) -> CniOutput {
    let mut conf = conf.clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    let mut c = node
        .call(op.command(), &conf)
        .container(target.id, &target.pod.path(), "eth0")
        .env("CNI_ARGS", cni_args(target.guest));
    if let Some(after) = kill {
        c = c.kill_after(after);
    }
    c.run()
}
