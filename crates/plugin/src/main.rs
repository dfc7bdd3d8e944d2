//! The `tweed` CNI plugin binary. See the library for what it does.

fn main() {
    // A detached helper DEL started to finish a device deletion.
    if let Ok(index) = std::env::var(tweed_plugin::dataplane::veth::DETACHED_DELETE_ENV) {
        std::process::exit(tweed_plugin::dataplane::veth::run_detached_delete(&index));
    }
    std::process::exit(tweed_plugin::run());
}
