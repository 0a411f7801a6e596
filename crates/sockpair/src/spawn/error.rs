//! [`SpawnError`]: a program that did not start, said with the program, the step and
//! the kernel's errno.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;

/// Why [`SpawnOptions`](crate::SpawnOptions) could not start a program: the program,
/// what failed (the options, the pair, `current_dir`, placing a descriptor, the program
/// itself), and the kernel's error, whose errno is kept.
///
/// An `io::Error` can carry an errno or a message of its own, not both, so spawning
/// returns this instead: [`raw_os_error`](SpawnError::raw_os_error) and
/// [`kind`](SpawnError::kind) are those of the kernel's error, and `Display` says
/// everything on one line (`spawn 'x': current_dir '/nope': No such file or directory
/// (os error 2)`). It converts into an `io::Error` of the same kind and message for `?`
/// in a function that returns `io::Result` (that `io::Error` holds the `SpawnError`:
/// [`io::Error::get_ref`] and `downcast_ref` give it back, errno included).
///
/// # Examples
///
/// ```
/// use sockpair::{Program, SpawnOptions};
///
/// let err = SpawnOptions::new()
///     .spawn_program(&Program::new("/no/such/program"))
///     .unwrap_err();
/// assert_eq!(err.raw_os_error(), Some(2)); // ENOENT
/// assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
/// assert_eq!(err.program(), "/no/such/program");
/// assert!(err.to_string().starts_with("spawn '/no/such/program': "));
/// ```
#[derive(Debug)]
pub struct SpawnError {
    program: OsString,
    step: Option<String>,
    error: io::Error,
}

impl SpawnError {
    pub(crate) fn new(program: &OsStr, step: Option<String>, error: io::Error) -> SpawnError {
        SpawnError {
            program: program.to_owned(),
            step,
            error,
        }
    }

    /// The kernel's errno, as [`io::Error::raw_os_error`]; `None` for options refused
    /// before any system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.error.raw_os_error()
    }

    /// The error's kind: that of the kernel's error (`NotFound` for a missing program
    /// or working directory, `PermissionDenied` for a file that is not executable), or
    /// [`io::ErrorKind::InvalidInput`] for options that cannot work.
    pub fn kind(&self) -> io::ErrorKind {
        self.error.kind()
    }

    /// The program that did not start, as it was named.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The underlying error, without the program and the step.
    pub fn io_error(&self) -> &io::Error {
        &self.error
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Control characters (a NUL, a newline) escaped: the name is shown, never acted on.
        f.write_str("spawn '")?;
        for c in self.program.to_string_lossy().chars() {
            match c.is_control() {
                true => write!(f, "{}", c.escape_default())?,
                false => write!(f, "{c}")?,
            }
        }
        f.write_str("': ")?;
        if let Some(step) = &self.step {
            write!(f, "{step}: ")?;
        }
        write!(f, "{}", self.error)
    }
}

/// `Display` already says what the underlying error says, so no `source` repeats it.
impl std::error::Error for SpawnError {}

impl From<SpawnError> for io::Error {
    /// An `io::Error` of the same kind and message, holding the `SpawnError`.
    fn from(err: SpawnError) -> io::Error {
        io::Error::new(err.kind(), err)
    }
}
