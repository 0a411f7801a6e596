//! [`Error`]: why a worker gave no result.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// Why [`Handle::join`](super::Handle::join) gave no result. Every way a worker can fail
/// ends in one of these; none of them is a hang.
///
/// ```
/// use std::process::ExitStatus;
/// use std::os::unix::process::ExitStatusExt;
/// use sockpair::worker::Error;
///
/// let aborted = Error::Died(ExitStatus::from_raw(6)); // a wait status: killed by signal 6
/// assert_eq!(
///     aborted.to_string(),
///     "the worker was killed by signal 6 (SIGABRT) before answering"
/// );
/// let exited = Error::Died(ExitStatus::from_raw(3 << 8)); // exit(3)
/// assert_eq!(exited.to_string(), "the worker exited with status 3 before answering");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The function panicked in the worker. Under `panic = "abort"` a panic ends the
    /// worker instead: [`Died`](Error::Died) with `SIGABRT`.
    Panicked {
        /// The panic's message (its payload, when that is a string).
        message: String,
        /// Where it panicked (`file:line:column`), if the worker's panic hook saw it.
        location: Option<String>,
    },
    /// The worker ended before answering: it exited (`std::process::exit`, say), aborted
    /// (`SIGABRT`), or was killed (a signal, the OOM killer, [`Handle::kill`]). The status
    /// says which: [`ExitStatus::code`], or [`ExitStatusExt::signal`].
    ///
    /// [`Handle::kill`]: super::Handle::kill
    Died(ExitStatus),
    /// [`Handle::join_timeout`](super::Handle::join_timeout) waited this long without an
    /// answer. The worker is left running: join again, or [`kill`](super::Handle::kill) it.
    Timeout(Duration),
    /// A pool task ended before a worker took it up: [`Handle::kill`](super::Handle::kill)
    /// while it was queued, or its [`Pool`](super::Pool) was dropped.
    Killed,
    /// A value did not survive serde: the argument did not decode in the worker, the
    /// result did not encode there, or it did not decode here (a type whose `Serialize`
    /// and `Deserialize` disagree, say).
    Decode(String),
    /// The worker could not run the function: it is not in the executable that holds
    /// sockpair (it lives in a shared library), or the worker is not the same executable
    /// as this process.
    NotFound(String),
    /// Talking to the worker failed, or the result was already taken by an earlier
    /// `join_timeout`.
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Panicked { message, location } => {
                write!(f, "the worker panicked: {message}")?;
                match location {
                    Some(location) => write!(f, " (at {location})"),
                    None => Ok(()),
                }
            }
            Error::Died(status) => {
                match (status.code(), status.signal()) {
                    (Some(code), _) => write!(f, "the worker exited with status {code}")?,
                    (None, Some(signal)) => {
                        write!(f, "the worker was killed by signal {signal}")?;
                        if let Some(name) = signal_name(signal) {
                            write!(f, " ({name})")?;
                        }
                        if status.core_dumped() {
                            write!(f, ", core dumped")?;
                        }
                    }
                    (None, None) => write!(f, "the worker ended ({status})")?,
                }
                write!(f, " before answering")
            }
            Error::Timeout(after) => write!(
                f,
                "the worker gave no answer within {after:?}; it is still running"
            ),
            Error::Killed => write!(f, "the task was ended before a worker took it up"),
            Error::Decode(why) => write!(f, "a value did not survive serde: {why}"),
            Error::NotFound(why) => write!(f, "the worker cannot run the function: {why}"),
            Error::Io(_) => write!(f, "talking to the worker failed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    /// `Io` unchanged; `Timeout` as [`io::ErrorKind::TimedOut`], `Decode` as
    /// [`io::ErrorKind::InvalidData`], `NotFound` as [`io::ErrorKind::NotFound`], the
    /// rest as [`io::ErrorKind::Other`], each with the error as its inner error.
    fn from(err: Error) -> io::Error {
        let kind = match err {
            Error::Io(err) => return err,
            Error::Timeout(_) => io::ErrorKind::TimedOut,
            Error::Decode(_) => io::ErrorKind::InvalidData,
            Error::NotFound(_) => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// The name of a signal that ends processes, as `kill -l` has it.
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGIO => "SIGIO",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}
