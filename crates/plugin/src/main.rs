//! The `tweed` CNI plugin binary. See the library for what it does.

fn main() {
    std::process::exit(tweed_plugin::run());
}
