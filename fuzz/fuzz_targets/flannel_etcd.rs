#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (tweed_fuzz_targets::target("flannel_etcd")
        .expect("known target")
        .run)(data)
});
