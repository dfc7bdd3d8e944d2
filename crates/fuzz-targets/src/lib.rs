//! The bodies of tweed's fuzz targets, one function per parser of input
//! that reaches tweed from outside (a runtime, an operator, the store, the
//! disk). Each feeds the bytes to the product's own parse function and, when
//! the parse succeeds, checks what the parse promises (mostly: what tweed
//! writes back reads back the same). A failed check panics, which libFuzzer
//! reports as a crash.
//!
//! The libFuzzer binaries in `fuzz/` and the corpus replay test
//! (`tests/replay.rs`, part of the ordinary `cargo test`) both call
//! [`TARGETS`], so a target's body lives here only.

mod agent;
mod cni;
mod guest;
mod ipam;
mod lab;
mod wire;

/// One fuzz target: its name (also its corpus folder, `fuzz/corpus/<name>`)
/// and its body.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target; `fuzz/fuzz_targets/<name>.rs` exists for each.
pub const TARGETS: &[Target] = &[
    Target {
        name: "cni_config",
        run: cni::config,
    },
    Target {
        name: "cni_prev_result",
        run: cni::prev_result,
    },
    Target {
        name: "cni_args",
        run: cni::args,
    },
    Target {
        name: "net_conf",
        run: agent::net_conf,
    },
    Target {
        name: "subnet_env",
        run: agent::subnet_env,
    },
    Target {
        name: "flannel_etcd",
        run: agent::flannel_etcd,
    },
    Target {
        name: "node_annotations",
        run: agent::node_annotations,
    },
    Target {
        name: "file_store_record",
        run: agent::file_store_record,
    },
    Target {
        name: "lab_topology",
        run: lab::topology,
    },
    Target {
        name: "guest_request",
        run: guest::request,
    },
    Target {
        name: "guest_record",
        run: guest::record,
    },
    Target {
        name: "ipam_store",
        run: ipam::store_file,
    },
    Target {
        name: "wire_annotation",
        run: wire::annotation,
    },
    Target {
        name: "wire_record",
        run: wire::record,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// Input as text; parsers of text files see invalid UTF-8 as a read error
/// before they run, so such input tests nothing.
fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
