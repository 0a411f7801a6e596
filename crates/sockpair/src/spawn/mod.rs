//! [`SpawnOptions`]: start a program with one end of a pair at a chosen descriptor.

mod convention;
mod error;
mod inherit;
mod program;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

pub use convention::Convention;
use convention::Value;
pub use error::SpawnError;
#[cfg(feature = "worker")]
pub(crate) use inherit::{claim_error, claim_fd};
pub use program::Program;

use crate::child::Child;
use crate::socket::{Socket, pair};
use crate::sys;
use crate::sys::spawn::{Failed, FdPlan, Step};
use crate::types::Type;

/// Starts a program with one end of a new pair at a chosen descriptor number, announced
/// in its environment; the other end is returned to the parent.
///
/// What the child gets: its stdio, its end at [`child_fd`](SpawnOptions::child_fd)
/// (inheritable, blocking), the descriptors given with [`fd`](SpawnOptions::fd), the
/// [`Convention`]'s variables, and by default no other descriptor, not even those this
/// process inherited without close-on-exec (as Go's `os/exec` and Python's `subprocess`
/// do). What nobody else gets: the ends are close-on-exec in this process, so children
/// that other threads spawn at the same time inherit neither; the parent's copy of the
/// child's end is closed before the spawn returns, so the parent reads EOF once the
/// child is gone.
///
/// # Two ways to start the child
///
/// | | [`spawn`](SpawnOptions::spawn)`(&mut Command)` | [`spawn_program`](SpawnOptions::spawn_program)`(&Program)` |
/// |---|---|---|
/// | honours | everything the `Command` says: stdio, uid, gid, groups, process group, `arg0`, `env_clear`, your `pre_exec` closures, and whatever std adds | what a [`Program`] can say: program, arguments, environment (`env_clear` too), working directory, process group |
/// | started by | std (`fork`, then `exec`), with one `pre_exec` hook of sockpair's that runs after yours | sockpair's `clone(CLONE_VM \| CLONE_VFORK)`, like `posix_spawn` |
/// | costs | `fork` copies the parent's page tables: about 64x std's plain spawn from a parent with 1 GiB touched (`cargo bench -p sockpair-benches`) | what std's plain spawn costs, however large the parent |
/// | systemd | no (`LISTEN_PID` needs sockpair's path) | yes |
///
/// `spawn` adds its hook to a `Command` once: spawning the same `Command` again gives the
/// child the same settings, and the [`Convention`]'s variables are not left on it (a
/// variable the `Command` did not mention is left removed, so that no stale number reaches
/// a later child). The hook's mark is one more removed variable in
/// [`Command::get_envs`], `SOCKPAIR_INTERNAL_PLAN_HOOK`, which changes no child's
/// environment. Outside a sockpair spawn the hook does nothing.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use sockpair::{Program, SpawnOptions};
///
/// // The child finds its end at fd 3 ($SOCKPAIR_FD) and echoes one line back.
/// let mut program = Program::new("sh");
/// program.args(["-c", r#"read line <&"$SOCKPAIR_FD"; echo "got $line" >&"$SOCKPAIR_FD""#]);
/// let (mut child, mut socket) = SpawnOptions::new().spawn_program(&program)?;
/// socket.write_all(b"hello\n")?;
/// let mut reply = String::new();
/// socket.read_to_string(&mut reply)?; // EOF once the child exits
/// assert_eq!(reply, "got hello\n");
/// assert!(child.wait()?.success());
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// Several descriptors, at numbers of your choice:
///
/// ```
/// use std::io::Read;
/// use std::process::Command;
/// use sockpair::SpawnOptions;
///
/// let (mut log_read, log_write) = std::io::pipe()?;
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", "echo to the log >&7"]);
/// let (mut child, _socket) = SpawnOptions::new().fd(7, log_write).spawn(&mut cmd)?;
/// assert!(child.wait()?.success());
/// let mut log = String::new();
/// drop(_socket);
/// # drop(cmd);
/// log_read.read_to_string(&mut log)?;
/// assert_eq!(log, "to the log\n");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    ty: Type,
    child_fd: i32,
    convention: Convention,
    close_other_fds: bool,
    die_with_parent: bool,
    kill_on_drop: bool,
    accept_fds: Option<bool>,
    /// More descriptors for the child: its number, and ours (shared by clones of the
    /// options, and closed here when the last of them is dropped).
    fds: Vec<(i32, Arc<OwnedFd>)>,
    /// The child shares this process's working directory, root and umask for its whole
    /// life (`CLONE_FS`): the worker's fork server, whose workers each start with them as
    /// they are at their fork.
    share_fs: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            ty: Type::STREAM,
            child_fd: 3,
            convention: Convention::default(),
            close_other_fds: true,
            die_with_parent: false,
            kill_on_drop: false,
            accept_fds: None,
            fds: Vec::new(),
            share_fs: false,
        }
    }
}

impl SpawnOptions {
    /// The defaults: a stream pair, the child's end at fd 3, `SOCKPAIR_FD=3`, no other
    /// descriptors passed on.
    pub fn new() -> SpawnOptions {
        SpawnOptions::default()
    }

    /// The pair's type (default [`Type::STREAM`]).
    pub fn ty(&mut self, ty: Type) -> &mut Self {
        self.ty = ty;
        self
    }

    /// The descriptor number of the child's end in the child (default 3). 0, 1 or 2 put
    /// it on the child's stdin, stdout or stderr, in place of what the `Command` says
    /// for that stream; for stdin and stdout both, add the second with
    /// [`fd`](SpawnOptions::fd) and a [`try_clone`](Socket::try_clone) of an end you
    /// pass to [`spawn_with_end`](SpawnOptions::spawn_with_end).
    pub fn child_fd(&mut self, fd: i32) -> &mut Self {
        self.child_fd = fd;
        self
    }

    /// Puts `fd` in the child at number `child_fd` too, inheritable, as Go's
    /// `ExtraFiles` do; every descriptor not named is still withheld. The options keep
    /// `fd` open in this process until they (and their clones) are dropped, and hand it
    /// to every child they start.
    ///
    /// Two descriptors for one number, or one on the end's own number, make the spawn
    /// fail before anything starts.
    pub fn fd(&mut self, child_fd: i32, fd: impl Into<OwnedFd>) -> &mut Self {
        self.fds.push((child_fd, Arc::new(fd.into())));
        self
    }

    /// How the child is told the number (default `Plain { env: "SOCKPAIR_FD" }`).
    pub fn convention(&mut self, convention: Convention) -> &mut Self {
        self.convention = convention;
        self
    }

    /// Whether descriptors 3 and up other than the child's own are withheld from it
    /// (default `true`). Set `false` to pass on descriptors you made inheritable on
    /// purpose.
    pub fn close_other_fds(&mut self, close: bool) -> &mut Self {
        self.close_other_fds = close;
        self
    }

    /// Whether the child is killed (`SIGKILL`) when the thread that spawned it exits,
    /// for example because this process was killed (default `false`). Linux's
    /// `PR_SET_PDEATHSIG`: it follows the spawning **thread**, so spawn from a thread
    /// that lives as long as the child should.
    pub fn die_with_parent(&mut self, die: bool) -> &mut Self {
        self.die_with_parent = die;
        self
    }

    /// Whether dropping the [`Child`] kills (`SIGKILL`) and reaps the process if it is
    /// still running (default `false`, as std's `Child`: dropping it then leaves the
    /// process running, and a zombie once it exits).
    pub fn kill_on_drop(&mut self, kill: bool) -> &mut Self {
        self.kill_on_drop = kill;
        self
    }

    /// The child shares this process's working directory, root and umask for its whole
    /// life (`CLONE_FS`, which outlives its `execve`); the program must not set a
    /// directory of its own.
    #[cfg(feature = "worker")]
    pub(crate) fn share_fs(&mut self) -> &mut Self {
        self.share_fs = true;
        self
    }

    /// Whether the child's end takes descriptors (`SO_PASSRIGHTS`), decided before the
    /// child exists (default: left as the socket has it, which for a new pair is yes).
    ///
    /// A [`Channel`](crate::Channel) follows the socket it is built on, so:
    /// - `accept_fds(true)` (or the default): a child that builds a `Channel` on its end
    ///   receives descriptors from the first message on, with nothing more to call.
    /// - `accept_fds(false)`: the kernel refuses every message with descriptors sent to
    ///   the child's end: the sender's `send_with_fds` fails at once with `EPERM`
    ///   ([`ErrorKind::Fds`](crate::ErrorKind::Fds) on a `Channel`), and nothing of the
    ///   message is sent. On seqpacket and datagram pairs this refuses large messages
    ///   too, which travel as a descriptor.
    ///
    /// Either way the outcome is the same every run, whatever the timing. The kernel can
    /// refuse descriptors from Linux 6.16 on; before that, asking for `false` makes the
    /// spawn fail with [`io::ErrorKind::Unsupported`] rather than start a child that
    /// would receive them.
    pub fn accept_fds(&mut self, accept: bool) -> &mut Self {
        self.accept_fds = Some(accept);
        self
    }

    /// Creates the pair and starts `cmd` through std with one end; returns the child and
    /// the other end (close-on-exec, blocking). Everything `cmd` says is honoured, and
    /// `cmd` is the same afterwards (see [Two ways](SpawnOptions#two-ways-to-start-the-child)).
    ///
    /// # Errors
    ///
    /// - [`io::ErrorKind::InvalidInput`] for bad options, before anything starts: a
    ///   negative descriptor number, two descriptors for one number, one at or above
    ///   `RLIMIT_NOFILE`, the Node convention on a pair that is not a stream, the systemd
    ///   convention (use [`spawn_program`](SpawnOptions::spawn_program)), a bad
    ///   `Convention::Plain` name.
    /// - The kernel's error from creating the pair, or from starting the program, in a
    ///   message that names the program and what failed (`current_dir`, a descriptor's
    ///   number, the program itself: `ENOENT` if it does not exist, `EACCES` if it is not
    ///   executable). Then no child is left running and no descriptor is left open.
    pub fn spawn(&self, cmd: &mut Command) -> Result<(Child, Socket), SpawnError> {
        let (parent_end, child_end) = pair(self.ty)
            .map_err(|err| SpawnError::new(cmd.get_program(), Some("socketpair".into()), err))?;
        let child = self.spawn_with_end(cmd, child_end)?;
        Ok((child, parent_end))
    }

    /// Starts `cmd` through std with `end` (a socket of your own, of any type) as the
    /// child's end, instead of a new pair's; [`ty`](SpawnOptions::ty) is ignored. Our
    /// copy of `end` is closed once the child has it.
    ///
    /// # Errors
    ///
    /// As [`spawn`](SpawnOptions::spawn).
    pub fn spawn_with_end(&self, cmd: &mut Command, end: Socket) -> Result<Child, SpawnError> {
        let plan = self
            .check_std()
            .and_then(|()| self.plan(&end))
            .map_err(|err| SpawnError::new(cmd.get_program(), None, err))?;
        let vars = self.convention.vars(self.child_fd);
        let before: Vec<_> = vars
            .iter()
            .map(|(name, _)| {
                cmd.get_envs()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.map(OsStr::to_owned))
            })
            .collect();
        for (name, value) in &vars {
            if let Value::Text(text) = value {
                cmd.env(name, text);
            }
        }
        let spawned = sys::spawn::spawn_std(cmd, &plan);
        // Leave the Command as it was: a variable it set or removed is again so; one it
        // did not mention is left removed, so that no stale number reaches a later child.
        for ((name, _), before) in vars.iter().zip(before) {
            match before {
                Some(Some(value)) => cmd.env(name, value),
                Some(None) | None => cmd.env_remove(name),
            };
        }
        drop(end);
        let child = spawned.map_err(|error| {
            // std reports the errno alone; say what failed where that tells.
            let cwd = cmd.get_current_dir();
            let what = match (error.kind(), cwd) {
                (io::ErrorKind::NotFound, Some(dir)) if !dir.is_dir() => {
                    step_text(Step::Chdir, cwd, &error)
                }
                _ if error.raw_os_error() == Some(libc::EBADF) => Some(
                    "a descriptor could not be placed in the child (EBADF: is its number at \
                     or above the child's RLIMIT_NOFILE?)"
                        .to_owned(),
                ),
                _ => None,
            };
            SpawnError::new(cmd.get_program(), what, error)
        })?;
        Ok(Child::from_std(child, self.kill_on_drop))
    }

    /// Creates the pair and starts `program` on sockpair's own path (see
    /// [Two ways](SpawnOptions#two-ways-to-start-the-child)); returns the child and the
    /// other end (close-on-exec, blocking).
    ///
    /// # Errors
    ///
    /// As [`spawn`](SpawnOptions::spawn); the systemd convention is accepted here, with
    /// a `child_fd` of 3.
    pub fn spawn_program(&self, program: &Program) -> Result<(Child, Socket), SpawnError> {
        let (parent_end, child_end) = pair(self.ty).map_err(|err| {
            SpawnError::new(program.get_program(), Some("socketpair".into()), err)
        })?;
        let child = self.spawn_program_with_end(program, child_end)?;
        Ok((child, parent_end))
    }

    /// Starts `program` on sockpair's own path with `end` as the child's end, instead of
    /// a new pair's; [`ty`](SpawnOptions::ty) is ignored. Our copy of `end` is closed
    /// once the child has it.
    ///
    /// # Errors
    ///
    /// As [`spawn_program`](SpawnOptions::spawn_program).
    pub fn spawn_program_with_end(
        &self,
        program: &Program,
        end: Socket,
    ) -> Result<Child, SpawnError> {
        let plan = self
            .check()
            .and_then(|()| self.plan(&end))
            .map_err(|err| SpawnError::new(program.get_program(), None, err))?;
        let mut exec = program
            .exec(&self.convention, self.child_fd, &plan)
            .map_err(|err| SpawnError::new(program.get_program(), None, err))?;
        if self.share_fs {
            // A directory change in the child would be this process's.
            if exec.cwd.is_some() {
                let err = io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a child that shares the working directory cannot have one of its own",
                );
                return Err(SpawnError::new(program.get_program(), None, err));
            }
            exec.share_fs = true;
        }
        let pid = sys::spawn::spawn(exec).map_err(|Failed { step, error }| {
            let what = step_text(step, program.get_current_dir(), &error);
            SpawnError::new(program.get_program(), what, error)
        })?;
        drop(end);
        Ok(Child::from_pid(pid, self.kill_on_drop))
    }

    /// The checks for std's path: those of every path, and no systemd.
    fn check_std(&self) -> io::Result<()> {
        if self.convention == Convention::Systemd {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the systemd convention writes LISTEN_PID between fork and exec, which std's \
                 spawn cannot do: use SpawnOptions::spawn_program with a Program",
            ));
        }
        self.check()
    }

    /// Refuses options that cannot work, before anything is created.
    fn check(&self) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        self.convention.check()?;
        let limit = sys::spawn::nofile_limit();
        let mut numbers = vec![self.child_fd];
        for (number, _) in &self.fds {
            if numbers.contains(number) {
                let whose = match *number == self.child_fd {
                    true => "the end's own number",
                    false => "already given another descriptor",
                };
                return invalid(format!(
                    "two descriptors for fd {number} in the child: it is {whose}"
                ));
            }
            numbers.push(*number);
        }
        for &number in &numbers {
            if number < 0 {
                return invalid(format!("fd {number} is negative"));
            }
            if number as u64 >= limit {
                return invalid(format!(
                    "fd {number} is not below RLIMIT_NOFILE ({limit}), which the child \
                     inherits: no descriptor can have that number there"
                ));
            }
        }
        if self.convention == Convention::Systemd && self.child_fd != 3 {
            return invalid(format!(
                "systemd passes descriptors from fd 3, not {}",
                self.child_fd
            ));
        }
        Ok(())
    }

    /// Sets the end's acceptance of descriptors and plans where every descriptor goes.
    fn plan(&self, end: &Socket) -> io::Result<FdPlan> {
        if self.convention == Convention::Node {
            let ty = end.ty()?;
            if ty != Type::STREAM {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("Node's IPC channel needs a stream pair, not a {ty} pair"),
                ));
            }
        }
        if let Some(accept) = self.accept_fds {
            match end.set_pass_rights(accept) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOPROTOOPT) && accept => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "accept_fds(false): this kernel cannot refuse descriptors \
                         (SO_PASSRIGHTS needs Linux 6.16)",
                    ));
                }
                Err(err) => return Err(err),
            }
        }
        let moves: Vec<(BorrowedFd<'_>, i32)> = std::iter::once((end.as_fd(), self.child_fd))
            .chain(self.fds.iter().map(|(number, fd)| (fd.as_fd(), *number)))
            .collect();
        FdPlan::new(&moves, self.close_other_fds, self.die_with_parent)
    }
}

/// What `step` was, in words, for [`SpawnError`]; `None` for the program itself.
fn step_text(step: Step, cwd: Option<&Path>, error: &io::Error) -> Option<String> {
    Some(match step {
        Step::Clone => "clone".to_owned(),
        Step::Chdir => format!(
            "current_dir '{}'",
            cwd.map_or("?".into(), |dir| dir.display().to_string())
        ),
        Step::ProcessGroup => "process_group".to_owned(),
        Step::DieWithParent => "die_with_parent".to_owned(),
        Step::PlaceFd(target) if error.raw_os_error() == Some(libc::EBADF) => {
            format!("fd {target} in the child: it is not below the child's RLIMIT_NOFILE")
        }
        Step::PlaceFd(target) => format!("fd {target} in the child"),
        Step::Exec => return None,
    })
}
