//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/*`) through
//! its target, so the ordinary `cargo test` catches a regression of any
//! bug the fuzzers found (each fixed bug has its input in the corpus)
//! without building libFuzzer.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use tweed_fuzz_targets::TARGETS;

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn every_corpus_input_passes_its_target() {
    let mut failures = Vec::new();
    let mut total = 0;
    for target in TARGETS {
        let dir = corpus_root().join(target.name);
        let mut inputs: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        inputs.sort();
        assert!(
            !inputs.is_empty(),
            "corpus {} is empty: the target would test nothing here",
            dir.display()
        );
        for path in inputs {
            let data = match fs::read(&path) {
                Ok(data) => data,
                // A fuzzer running on this corpus (`scripts/fuzz.sh run`)
                // deletes the inputs it has reduced: gone, not failed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("corpus input {}: {e}", path.display()),
            };
            total += 1;
            if catch_unwind(AssertUnwindSafe(|| (target.run)(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
    eprintln!(
        "replayed {total} corpus inputs over {} targets",
        TARGETS.len()
    );
}

#[test]
fn every_target_has_a_libfuzzer_binary() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/fuzz_targets");
    for target in TARGETS {
        let file = dir.join(format!("{}.rs", target.name));
        let body = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            body.contains(&format!("target(\"{}\")", target.name)),
            "{} does not run target {:?}",
            file.display(),
            target.name
        );
    }
}
