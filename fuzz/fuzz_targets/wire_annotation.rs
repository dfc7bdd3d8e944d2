#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    (tweed_fuzz_targets::target("wire_annotation")
        .expect("known target")
        .run)(data)
});
