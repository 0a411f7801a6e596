//! [`Program`]: what sockpair's own spawn path can start, and nothing more.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::Convention;
use super::convention::Value;
use crate::sys::spawn::PID_DIGITS;
use crate::sys::spawn::{Exec, FdPlan};

/// A program to start on sockpair's fast path ([`SpawnOptions::spawn_program`]): the
/// program, its arguments, its environment, its working directory and its process
/// group, which is all that path honours.
///
/// Unlike a [`Command`], a `Program` cannot say anything the fast path would drop: for
/// stdio, uid, gid, `pre_exec` closures and the rest, use a `Command` with
/// [`SpawnOptions::spawn`], which goes through std. The methods mirror `Command`'s.
///
/// ```
/// use sockpair::Program;
///
/// let mut program = Program::new("sh");
/// program.args(["-c", "echo hi >&3"]).env("LANG", "C").current_dir("/");
/// assert_eq!(program.get_program(), "sh");
/// ```
///
/// [`SpawnOptions::spawn_program`]: crate::SpawnOptions::spawn_program
/// [`SpawnOptions::spawn`]: crate::SpawnOptions::spawn
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    program: OsString,
    args: Vec<OsString>,
    /// Changes to the environment: `None` removes the variable.
    env: BTreeMap<OsString, Option<OsString>>,
    env_clear: bool,
    cwd: Option<PathBuf>,
    pgroup: Option<i32>,
    /// A variable set to the child's own pid, written between fork and exec (as
    /// systemd's `LISTEN_PID`), so that only that process takes it as meant for itself.
    pid_var: Option<&'static str>,
}

impl Program {
    /// A program to run, found as `execvp` finds it: through the child's `PATH` (or
    /// `/bin:/usr/bin` without one) unless it holds a `/`. It inherits this process's
    /// environment and working directory.
    pub fn new(program: impl AsRef<OsStr>) -> Program {
        Program {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_clear: false,
            cwd: None,
            pgroup: None,
            pid_var: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// Sets a variable in the child's environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets several variables.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (key, value) in vars {
            self.env(key, value);
        }
        self
    }

    /// Removes a variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the child with an empty environment, plus what is set after this call
    /// (and the [`Convention`]'s variables); forgets earlier `env` calls.
    pub fn env_clear(&mut self) -> &mut Self {
        self.env.clear();
        self.env_clear = true;
        self
    }

    /// The child's working directory; a relative program path is looked up from it.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Self {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Puts the child in process group `pgroup` (`setpgid(0, pgroup)`); 0 makes it the
    /// leader of a new group, as [`CommandExt::process_group`] does. A child in a
    /// group of its own is not the terminal's foreground: reading the terminal stops it.
    pub fn process_group(&mut self, pgroup: i32) -> &mut Self {
        self.pgroup = Some(pgroup);
        self
    }

    /// The program.
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, without the program.
    pub fn get_args(&self) -> impl ExactSizeIterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    /// Sets `name` to the child's own pid in its environment (see `pid_var`).
    #[cfg(feature = "worker")]
    pub(crate) fn pid_var(&mut self, name: &'static str) -> &mut Self {
        self.pid_var = Some(name);
        self
    }

    /// The environment changes, as [`Command::get_envs`] lists them (`None`: removed).
    pub fn get_envs(&self) -> impl ExactSizeIterator<Item = (&OsStr, Option<&OsStr>)> {
        self.env
            .iter()
            .map(|(key, value)| (key.as_os_str(), value.as_deref()))
    }

    /// Whether the child starts from an empty environment ([`env_clear`](Program::env_clear)).
    pub fn get_env_clear(&self) -> bool {
        self.env_clear
    }

    /// The working directory, if set.
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// A [`Command`] that says the same, for std's path (and whatever else a `Command`
    /// can add).
    pub fn to_command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        if self.env_clear {
            cmd.env_clear();
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        if let Some(pgroup) = self.pgroup {
            cmd.process_group(pgroup);
        }
        cmd
    }

    /// The direct path's plan: paths to try, argv, the full environment with the
    /// convention's variables, the cwd.
    pub(super) fn exec<'a>(
        &self,
        convention: &Convention,
        child_fd: i32,
        plan: &'a FdPlan,
    ) -> io::Result<Exec<'a>> {
        let mut env: Vec<(OsString, OsString)> = match self.env_clear {
            true => Vec::new(),
            false => std::env::vars_os().collect(),
        };
        for (key, value) in &self.env {
            env.retain(|(k, _)| k != key);
            if let Some(value) = value {
                env.push((key.clone(), value.clone()));
            }
        }
        let mut ours = convention.vars(child_fd);
        ours.extend(self.pid_var.map(|name| (name, Value::ChildPid)));
        env.retain(|(key, _)| {
            !ours.iter().any(|(name, _)| key == name)
                && !convention.stale_vars().iter().any(|name| key == name)
        });
        let mut pid_slot = None;
        let mut envp = Vec::with_capacity(env.len() + ours.len());
        for (key, value) in &env {
            envp.push(c_string([key.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
        for (name, value) in ours {
            let value = match value {
                Value::Text(text) => text,
                Value::ChildPid => {
                    if pid_slot.is_some() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("{name}: only one variable can hold the child's pid"),
                        ));
                    }
                    pid_slot = Some(envp.len());
                    "0".repeat(PID_DIGITS)
                }
            };
            envp.push(c_string(format!("{name}={value}").into_bytes())?);
        }
        let path = env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.as_os_str());
        Ok(Exec {
            programs: candidates(&self.program, path)?,
            argv: std::iter::once(&self.program)
                .chain(&self.args)
                .map(|arg| c_string(arg.clone().into_vec()))
                .collect::<io::Result<_>>()?,
            envp,
            pid_slot,
            cwd: self
                .cwd
                .as_ref()
                .map(|cwd| c_string(cwd.clone().into_os_string().into_vec()))
                .transpose()?,
            pgroup: self.pgroup,
            plan,
            share_fs: false,
        })
    }
}

fn c_string(bytes: Vec<u8>) -> io::Result<CString> {
    CString::new(bytes).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a NUL byte in {:?}",
                String::from_utf8_lossy(&err.into_vec())
            ),
        )
    })
}

/// The paths `execvp` would try for `program`: itself if it contains a `/`, else each
/// directory of `path` (the child's `PATH`, or `/bin:/usr/bin` without one) in order.
fn candidates(program: &OsStr, path: Option<&OsStr>) -> io::Result<Vec<CString>> {
    let program = program.as_bytes();
    if program.contains(&b'/') || program.is_empty() {
        return Ok(vec![c_string(program.to_vec())?]);
    }
    let path = path.map_or(&b"/bin:/usr/bin"[..], OsStrExt::as_bytes);
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            c_string([dir, b"/", program].concat())
        })
        .collect()
}
