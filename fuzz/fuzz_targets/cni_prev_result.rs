#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (tweed_fuzz_targets::target("cni_prev_result")
        .expect("known target")
        .run)(data)
});
