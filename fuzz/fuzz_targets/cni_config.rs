#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (tweed_fuzz_targets::target("cni_config")
        .expect("known target")
        .run)(data)
});
