//! Small statistics for the reports (tweed_testkit::stats) and how the
//! reports say yes and no.

pub use tweed_testkit::stats::*;

pub fn yes_no(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}
