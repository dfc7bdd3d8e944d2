//! The `tweed` CNI plugin binary. See the library for what it does.
//!
//! `no_main`: the plugin runs once per CNI call, and Rust's usual start-up
//! (stack-guard discovery through /proc/self/maps, signal handlers for
//! stack overflows, argument capture) costs a noticeable share of a call
//! that does nothing else that needs it. libc still sets up the process;
//! `std` works as usual (environment, files, sockets, panics abort).

#![no_main]

/// The C entry point libc calls.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // Rust's start-up (skipped here) ignores SIGPIPE; without that, a
    // runtime that closed our stdout early would kill the plugin before it
    // appends its call-log line. Ignored, the write fails with EPIPE and
    // the plugin finishes as usual (its writes already ignore errors).
    // SAFETY: called first, before any thread exists; SIG_IGN is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // A detached helper DEL started to finish a device deletion.
    if let Ok(index) = std::env::var(tweed_plugin::dataplane::veth::DETACHED_DELETE_ENV) {
        return tweed_plugin::dataplane::veth::run_detached_delete(&index);
    }
    // urunc's OCI hooks (docs/urunc.md); a CNI call has no arguments.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(tweed_plugin::urunc_hook::ARG) {
        return tweed_plugin::urunc_hook::run(args.next().as_deref());
    }
    tweed_plugin::run()
}
