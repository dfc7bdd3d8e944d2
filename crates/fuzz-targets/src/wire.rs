//! Wires: the `tweed.io/wires` pod annotation and the per-pod wire record
//! the plugin writes for tweedd.

use tweed_wire::parse_annotation;
use tweed_wire::record::parse;

const POD: &str = "lab/r1";

/// The annotation of pod `lab/r1`: no interface twice, no wire to itself.
pub fn annotation(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let Ok(wires) = parse_annotation(text, POD) else {
        return;
    };
    let mut names: Vec<&str> = wires.iter().map(|w| w.ifname.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "an interface named twice in {text:?}");
}

/// A wire record file: what tweed writes for it reads back the same.
pub fn record(data: &[u8]) {
    let Ok(rec) = parse(data) else {
        return;
    };
    let written = serde_json::to_vec(&rec).expect("records serialise");
    assert_eq!(parse(&written).expect("a written record parses"), rec);
}
