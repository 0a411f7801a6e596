//! [`Options`]: how workers start: forked from the fork server (the default) or from a
//! fresh `exec`, and what they see (environment, working directory, stdio).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Handle, Pool};
use crate::spawn::Program;

/// Where a worker's standard input, output or error goes.
#[derive(Clone, Debug, Default)]
pub enum Stdio {
    /// This process's own, as it is when the worker starts (the default).
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A descriptor of yours (shared by every worker the options start).
    Fd(Arc<OwnedFd>),
}

impl Stdio {
    /// A descriptor of yours, for every worker these options start.
    pub fn from_fd(fd: impl Into<OwnedFd>) -> Stdio {
        Stdio::Fd(Arc::new(fd.into()))
    }

    /// What an exec'd worker gets as standard stream `number`: `None` to inherit it (the
    /// spawn does), else a descriptor of its own.
    pub(crate) fn for_exec(&self, number: i32) -> io::Result<Option<OwnedFd>> {
        match self {
            Stdio::Inherit => Ok(None),
            Stdio::Null => dev_null(number).map(Some),
            Stdio::Fd(fd) => Ok(Some(fd.as_fd().try_clone_to_owned()?)),
        }
    }
}

/// `/dev/null`, for reading (standard input) or writing.
pub(crate) fn dev_null(number: i32) -> io::Result<OwnedFd> {
    let file = match number {
        0 => File::open("/dev/null")?,
        _ => File::options().write(true).open("/dev/null")?,
    };
    Ok(file.into())
}

/// How to start workers, for [`spawn`](Options::spawn) and [`pool`](Options::pool);
/// [`worker::spawn`](super::spawn) and [`Pool::new`] use the defaults.
///
/// By default a worker is forked from the **fork server**: a copy of this executable
/// started once (at the first spawn), small and single-threaded however large or
/// threaded this process is, which forks each worker on request. That costs a fraction
/// of an `exec`, and is safe from any parent. Each worker still sees what a fresh child
/// of this process would: this process's environment, working directory, umask and
/// stdio as they are at the spawn, with the changes made here. (The working directory
/// and umask are the ones this process's threads share: the fork server shares them,
/// live; a thread that `unshare(CLONE_FS)`d has its own, which its workers do not see.)
/// [`exec`](Options::exec) starts each worker from a fresh process image instead.
///
/// ```
/// # sockpair::worker::init_before_main!();
/// use sockpair::worker::{Options, Stdio};
///
/// fn greeting(_: ()) -> String {
///     std::env::var("GREETING").unwrap_or_default()
/// }
///
/// let mut options = Options::new();
/// options.env("GREETING", "hello").stdout(Stdio::Null);
/// assert_eq!(options.spawn(greeting, ())?.join()?, "hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Options {
    /// This executable, with the environment and directory changes asked for: what an
    /// exec'd worker is started as, and what a forked one is told.
    pub(crate) program: Program,
    pub(crate) stdio: [Stdio; 3],
    pub(crate) exec: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            program: Program::new("/proc/self/exe"),
            stdio: Default::default(),
            exec: false,
        }
    }
}

impl Options {
    /// The defaults: from the fork server, this process's environment, working
    /// directory and stdio.
    pub fn new() -> Options {
        Options::default()
    }

    /// Sets a variable in the workers' environment. A name that is empty or holds `=` or
    /// a NUL byte, or a value that holds a NUL byte, fails each spawn with
    /// [`io::ErrorKind::InvalidInput`] (on both paths, before anything starts).
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.program.env(key, value);
        self
    }

    /// Removes a variable from the workers' environment (a name that could not be set,
    /// as for [`env`](Options::env), fails each spawn).
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.program.env_remove(key);
        self
    }

    /// Starts the workers' environment empty (the variables set after this still are).
    pub fn env_clear(&mut self) -> &mut Self {
        self.program.env_clear();
        self
    }

    /// The workers' working directory (relative: to this process's, at the spawn). One
    /// that cannot be entered fails the spawn, on both paths, with an error naming it
    /// and the system's reason as its kind ([`NotFound`](io::ErrorKind::NotFound),
    /// [`NotADirectory`](io::ErrorKind::NotADirectory),
    /// [`PermissionDenied`](io::ErrorKind::PermissionDenied)); one holding a NUL byte
    /// fails it with [`InvalidInput`](io::ErrorKind::InvalidInput). The next spawn is not
    /// affected.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.program.current_dir(dir);
        self
    }

    /// The workers' standard input.
    pub fn stdin(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[0] = stdio;
        self
    }

    /// The workers' standard output.
    pub fn stdout(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[1] = stdio;
        self
    }

    /// The workers' standard error.
    pub fn stderr(&mut self, stdio: Stdio) -> &mut Self {
        self.stdio[2] = stdio;
        self
    }

    /// `true`: each worker is this executable started again with `exec` (a fresh
    /// process image, as code that must start from one needs); `false` (the default):
    /// forked from the fork server.
    pub fn exec(&mut self, exec: bool) -> &mut Self {
        self.exec = exec;
        self
    }

    /// Runs `f(arg)` in a new worker started as these options say; see
    /// [`worker::spawn`](super::spawn).
    ///
    /// # Errors
    ///
    /// As [`worker::spawn`](super::spawn); and the fork server's refusal or death, a
    /// working directory that cannot be used, or an environment variable that cannot be
    /// set (see [`env`](Options::env)).
    pub fn spawn<A, R>(&self, f: fn(A) -> R, arg: A) -> io::Result<Handle<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        super::spawn_with(self, f, arg)
    }

    /// A [`Pool`] of `n` workers started as these options say (replacements too).
    ///
    /// # Errors
    ///
    /// As [`Pool::new`], and as [`spawn`](Options::spawn) for what a worker's start can
    /// fail of.
    pub fn pool(&self, n: usize) -> io::Result<Pool> {
        Pool::with_options(n, self)
    }

    /// Checks what these options ask of a worker's start, the same on both paths, before
    /// anything starts: each variable's name is not empty and holds neither `=` nor a NUL
    /// byte, no value holds a NUL byte, and neither does the working directory.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`], naming what is wrong.
    pub(crate) fn check(&self) -> io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        for (key, value) in self.program.get_envs() {
            let name = key.as_bytes();
            if !crate::fork::settable_name(name) {
                return invalid(format!(
                    "a worker's environment variable {key:?}: a name must not be empty, or \
                     hold '=' or a NUL byte"
                ));
            }
            if let Some(value) = value
                && value.as_bytes().contains(&0)
            {
                return invalid(format!(
                    "a worker's environment variable {key:?}: a NUL byte in its value {value:?}"
                ));
            }
        }
        if let Some(dir) = self.program.get_current_dir()
            && dir.as_os_str().as_bytes().contains(&0)
        {
            return invalid(format!(
                "a worker's working directory {dir:?}: a NUL byte in it"
            ));
        }
        Ok(())
    }

    /// The environment a worker sees: this process's (unless cleared) with the changes.
    pub(crate) fn environment(&self) -> Vec<(OsString, OsString)> {
        let mut vars: Vec<(OsString, OsString)> = match self.program.get_env_clear() {
            true => Vec::new(),
            false => std::env::vars_os().collect(),
        };
        for (key, value) in self.program.get_envs() {
            vars.retain(|(have, _)| have != key);
            if let Some(value) = value {
                vars.push((key.to_owned(), value.to_owned()));
            }
        }
        vars
    }
}
