//! Parallel ADDs: each thread opens its own `Store` (its own open file
//! description of `lock`, like separate plugin processes), so only the flock
//! keeps them from handing out one address twice.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;

use common::spec_in;
use tweed_ipam::{Store, allocate};

const THREADS: usize = 16;
const PER_THREAD: usize = 8;

#[test]
fn sixteen_threads_get_distinct_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Arc::new(spec_in(
        tmp.path(),
        r#"[[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:244::/120"}]]"#,
    ));
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let spec = Arc::clone(&spec);
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let store = Store::open(&spec.data_dir, "net").expect("open");
                barrier.wait();
                let mut got = Vec::new();
                for i in 0..PER_THREAD {
                    let guard = store.lock().expect("lock");
                    let id = format!("container-{t}-{i}");
                    for a in allocate(&spec, &guard, &id, "eth0", &[]).expect("allocate") {
                        got.push(a.address.addr());
                    }
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("thread"));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), THREADS * PER_THREAD * 2);
    assert_eq!(distinct.len(), all.len(), "an address was handed out twice");

    let store = Store::open(&spec.data_dir, "net").unwrap();
    let guard = store.lock().unwrap();
    assert_eq!(guard.reservations().unwrap().len(), all.len());
    // Round-robin from .2 with no gaps: exactly .2 ..= .129 were used.
    let v4: HashSet<_> = all.iter().filter(|ip| ip.is_ipv4()).collect();
    for n in 2..2 + THREADS * PER_THREAD {
        assert!(
            v4.contains(&format!("10.244.0.{n}").parse::<std::net::IpAddr>().unwrap()),
            "10.244.0.{n} missing"
        );
    }
}
