//! tweedctl's standard output. `println!` panics ("failed printing to
//! stdout") when the reader has gone away, as in `tweedctl lab status |
//! head -1`. Here a closed pipe means the reader has all it wants: output
//! stops quietly and the command goes on, so work already under way (a
//! lab being built) is finished or undone as usual and the exit code still
//! says whether it succeeded. Any other write error is reported once on
//! stderr and makes the command fail.

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
/// The reader closed the pipe: drop further output, not an error.
const READER_GONE: u8 = 1;
/// Writing failed for another reason (already reported on stderr).
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(OPEN);

/// Writes formatted text to stdout (what `out!`/`outln!` expand to).
pub fn write(args: fmt::Arguments<'_>) {
    if STATE.load(Ordering::Relaxed) != OPEN {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| stdout.flush());
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
            STATE.store(READER_GONE, Ordering::Relaxed);
        }
        Err(e) => {
            STATE.store(FAILED, Ordering::Relaxed);
            eprintln!("tweedctl: writing to stdout: {e}");
        }
    }
}

/// Whether writing failed for a reason other than the reader leaving.
pub fn failed() -> bool {
    STATE.load(Ordering::Relaxed) == FAILED
}

/// `print!` that never panics on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// `println!` that never panics on a closed pipe.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}
