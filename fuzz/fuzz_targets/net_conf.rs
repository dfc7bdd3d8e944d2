#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (tweed_fuzz_targets::target("net_conf")
        .expect("known target")
        .run)(data)
});
