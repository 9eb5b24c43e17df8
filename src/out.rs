//! isobench's own terminal output, which never panics and never kills.
//!
//! isobench ignores SIGPIPE, so a reader that goes away (`isobench run |
//! head -2`) turns a write into an `EPIPE` error instead of killing the
//! process in the middle of a run (which would leave its instances, cgroups
//! and runtime directory behind). The macros [`say!`] (stderr) and [`show!`]
//! (stdout) write a line and, when the stream is closed, remember it and
//! raise the flag registered with [`stop_on_close`]: a run then ends as if
//! interrupted — the instance is torn down, partial results are kept, the
//! report is rendered — and exits with [`EXIT_CLOSED`].
//!
//! [`say!`]: crate::say
//! [`show!`]: crate::show

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Exit status when isobench stopped because its output was closed
/// (128 + SIGPIPE, as a shell reports a process that SIGPIPE ended).
pub const EXIT_CLOSED: u8 = 141;

static CLOSED: AtomicBool = AtomicBool::new(false);
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Ignores SIGPIPE for the whole process: writes to a closed pipe fail
/// with `EPIPE`, which isobench handles, instead of ending it.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up; no
    // handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Raises `stop` when stdout or stderr turns out to be closed.
pub fn stop_on_close(stop: Arc<AtomicBool>) {
    let _ = STOP.set(stop);
}

/// Whether a write to stdout or stderr found it closed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::SeqCst)
}

/// Which standard stream a write goes to.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Standard output: results (tables, paths).
    Stdout,
    /// Standard error: progress and messages.
    Stderr,
}

/// Writes `text` to the stream; a closed stream is remembered, not an error.
pub fn write(stream: Stream, text: &str) {
    let r = match stream {
        Stream::Stdout => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes()).and_then(|()| o.flush())
        }
        Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
    };
    if let Err(e) = r
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        CLOSED.store(true, Ordering::SeqCst);
        if let Some(stop) = STOP.get() {
            stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Like `eprintln!`, without panicking on a closed stderr.
#[macro_export]
macro_rules! say {
    () => { $crate::out::write($crate::out::Stream::Stderr, "\n") };
    ($($arg:tt)*) => {
        $crate::out::write($crate::out::Stream::Stderr, &format!("{}\n", format_args!($($arg)*)))
    };
}

/// Like `eprint!` (no newline), without panicking on a closed stderr.
#[macro_export]
macro_rules! say_part {
    ($($arg:tt)*) => {
        $crate::out::write($crate::out::Stream::Stderr, &format!($($arg)*))
    };
}

/// Like `println!`, without panicking on a closed stdout.
#[macro_export]
macro_rules! show {
    () => { $crate::out::write($crate::out::Stream::Stdout, "\n") };
    ($($arg:tt)*) => {
        $crate::out::write($crate::out::Stream::Stdout, &format!("{}\n", format_args!($($arg)*)))
    };
}

/// Like `print!` (no newline), without panicking on a closed stdout.
#[macro_export]
macro_rules! show_part {
    ($($arg:tt)*) => {
        $crate::out::write($crate::out::Stream::Stdout, &format!($($arg)*))
    };
}
