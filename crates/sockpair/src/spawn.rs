//! [`SpawnOptions`]: start a program with one end of a pair at a chosen descriptor.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::child::Child;
use crate::command::CommandParts;
use crate::socket::{Socket, pair};
use crate::sys::spawn::{Exec, Placement, place_fd_in, spawn as spawn_direct};
use crate::types::Type;

/// How the child learns where its end is: the environment variables of one ecosystem.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Convention {
    /// `env`=the descriptor number, for programs of your own; read it with
    /// [`Socket::from_inherited`]. The default uses `SOCKPAIR_FD`.
    Plain {
        /// The variable's name.
        env: String,
    },
    /// Node.js's IPC channel: `NODE_CHANNEL_FD`=the number and
    /// `NODE_CHANNEL_SERIALIZATION_MODE=json`, so that a `node` child can use
    /// `process.send`, `process.on('message')` and `'disconnect'`. Stream pairs only:
    /// Node's reader corrupts messages on seqpacket. The protocol: one compact JSON text
    /// per line, and never an empty line (it kills the child).
    Node,
    /// systemd socket activation (`sd_listen_fds(3)`): the end at fd 3, `LISTEN_FDS=1`,
    /// `LISTEN_FDNAMES=sockpair` and `LISTEN_PID` = the child's own pid, written into its
    /// environment between fork and exec. Needs sockpair's own spawn path, so the
    /// `Command` may set only program, arguments, environment and working directory.
    Systemd,
    /// Wayland: `WAYLAND_SOCKET`=the number, as compositors hand a connection to the
    /// clients they launch.
    Wayland,
}

impl Default for Convention {
    fn default() -> Self {
        Convention::Plain {
            env: "SOCKPAIR_FD".to_owned(),
        }
    }
}

/// A variable the convention sets: a fixed value, or the child's pid.
enum Value {
    Text(String),
    ChildPid,
}

/// Room for a pid in decimal (`pid_max` is at most 2^22 on Linux; `u32::MAX` has 10 digits).
const PID_ROOM: usize = 10;

impl Convention {
    /// The variables this convention sets for a child whose end is at `fd`.
    fn vars(&self, fd: i32) -> Vec<(&str, Value)> {
        let number = || Value::Text(fd.to_string());
        match self {
            Convention::Plain { env } => vec![(env.as_str(), number())],
            Convention::Node => vec![
                ("NODE_CHANNEL_FD", number()),
                (
                    "NODE_CHANNEL_SERIALIZATION_MODE",
                    Value::Text("json".to_owned()),
                ),
            ],
            Convention::Systemd => vec![
                ("LISTEN_FDS", Value::Text("1".to_owned())),
                ("LISTEN_FDNAMES", Value::Text("sockpair".to_owned())),
                ("LISTEN_PID", Value::ChildPid),
            ],
            Convention::Wayland => vec![("WAYLAND_SOCKET", number())],
        }
    }

    /// Variables a parent of this convention must not pass on from its own environment.
    fn stale_vars(&self) -> &'static [&'static str] {
        match self {
            // Newer libsystemd checks LISTEN_PIDFDID when present; ours would be wrong.
            Convention::Systemd => &["LISTEN_PIDFDID"],
            _ => &[],
        }
    }
}

/// Starts a program with one end of a new pair at a chosen descriptor number, announced
/// in its environment; the other end is returned to the parent.
///
/// What the child gets: its stdio, its end at [`child_fd`](SpawnOptions::child_fd)
/// (inheritable, blocking), the [`Convention`]'s variables, and by default no other
/// descriptor, not even those this process inherited without close-on-exec (as Go's
/// `os/exec` and Python's `subprocess` do). What nobody else gets: the ends are
/// close-on-exec in this process, so children that other threads spawn at the same time
/// inherit neither; the parent's copy of the child's end is closed before `spawn`
/// returns, so the parent reads EOF once the child is gone.
///
/// # How the child is started
///
/// A `Command` that sets only program, arguments, environment (including `env_clear`)
/// and working directory is started by sockpair itself with `clone(CLONE_VM |
/// CLONE_VFORK)` and `execve`, like `posix_spawn`: as fast as std's own spawn, however
/// large the parent. A `Command` that sets stdio, uid, gid, a process group or `arg0` is
/// started by std, with a `pre_exec` hook that places the descriptor: everything the
/// `Command` says is honoured, but std then forks, which costs time in proportion to
/// the parent's memory (`docs/benchmarks.md`). Either way `pre_exec` closures of your
/// own are not supported: sockpair's path does not run them.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::process::Command;
/// use sockpair::SpawnOptions;
///
/// // The child finds its end at fd 3 ($SOCKPAIR_FD) and echoes one line back.
/// let mut cmd = Command::new("sh");
/// cmd.args(["-c", r#"read line <&"$SOCKPAIR_FD"; echo "got $line" >&"$SOCKPAIR_FD""#]);
/// let (mut child, mut socket) = SpawnOptions::new().spawn(&mut cmd)?;
/// socket.write_all(b"hello\n")?;
/// let mut reply = String::new();
/// socket.read_to_string(&mut reply)?; // EOF once the child exits
/// assert_eq!(reply, "got hello\n");
/// assert!(child.wait()?.success());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SpawnOptions {
    ty: Type,
    child_fd: i32,
    convention: Convention,
    close_other_fds: bool,
    die_with_parent: bool,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            ty: Type::STREAM,
            child_fd: 3,
            convention: Convention::default(),
            close_other_fds: true,
            die_with_parent: false,
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

    /// The descriptor number of the child's end in the child (default 3; at least 3,
    /// since 0 to 2 are stdio: to make an end the child's stdin, use
    /// `Command::stdin(Stdio::from(OwnedFd::from(socket)))` instead).
    pub fn child_fd(&mut self, fd: i32) -> &mut Self {
        self.child_fd = fd;
        self
    }

    /// How the child is told the number (default `Plain { env: "SOCKPAIR_FD" }`).
    pub fn convention(&mut self, convention: Convention) -> &mut Self {
        self.convention = convention;
        self
    }

    /// Whether descriptors 3 and up other than the child's end are withheld from the
    /// child (default `true`). Set `false` to pass on descriptors you made inheritable
    /// on purpose.
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

    /// Creates the pair and starts `cmd` with one end; returns the child and the other
    /// end (close-on-exec, blocking).
    ///
    /// # Errors
    ///
    /// - [`io::ErrorKind::InvalidInput`] for a `child_fd` below 3, the Node convention on
    ///   a pair that is not a stream, the systemd convention with a `child_fd` other than
    ///   3 or with a `Command` that only std can start, and a NUL byte in any argument or
    ///   variable.
    /// - The kernel's error from creating the pair, or from starting the program (e.g.
    ///   `ENOENT` if it does not exist, `EACCES` if it is not executable). Then no child
    ///   is left running and no descriptor is left open.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, Socket)> {
        self.check()?;
        let (parent_end, child_end) = pair(self.ty)?;
        let placement = Placement {
            source: child_end.as_raw_fd(),
            target: self.child_fd,
            close_others: self.close_other_fds,
            die_with: if self.die_with_parent {
                std::process::id() as i32
            } else {
                0
            },
        };
        let child = match CommandParts::read(cmd) {
            Some(parts) => Child::from_pid(spawn_direct(self.exec(parts, placement)?)?),
            None => self.spawn_through_std(cmd, placement)?,
        };
        drop(child_end);
        Ok((child, parent_end))
    }

    fn check(&self) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if self.child_fd < 3 {
            return invalid(format!(
                "child_fd {} is stdio or negative: use 3 or more, or Command::stdin/stdout for stdio",
                self.child_fd
            ));
        }
        if self.convention == Convention::Node && self.ty != Type::STREAM {
            return invalid(format!(
                "Node's IPC channel needs a stream pair, not {:?}",
                self.ty
            ));
        }
        if self.convention == Convention::Systemd && self.child_fd != 3 {
            return invalid(format!(
                "systemd passes descriptors from fd 3, not {}",
                self.child_fd
            ));
        }
        Ok(())
    }

    /// The direct path's plan: paths to try, argv, the full environment, the cwd.
    fn exec(&self, parts: CommandParts, placement: Placement) -> io::Result<Exec> {
        let mut env = parts.env;
        let ours = self.convention.vars(self.child_fd);
        env.retain(|(key, _)| {
            !ours.iter().any(|(name, _)| key == name)
                && !self.convention.stale_vars().iter().any(|name| key == name)
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
                    pid_slot = Some(envp.len());
                    "0".repeat(PID_ROOM)
                }
            };
            envp.push(c_string(format!("{name}={value}").into_bytes())?);
        }
        let path = env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.as_os_str());
        Ok(Exec {
            programs: candidates(&parts.program, path)?,
            argv: std::iter::once(&parts.program)
                .chain(&parts.args)
                .map(|arg| c_string(arg.clone().into_vec()))
                .collect::<io::Result<_>>()?,
            envp,
            pid_slot,
            cwd: parts
                .cwd
                .map(|cwd| c_string(cwd.into_os_string().into_vec()))
                .transpose()?,
            placement,
        })
    }

    /// The std path: the `Command` keeps its own settings, a `pre_exec` hook places the
    /// descriptor, and the convention's variables are set on the `Command` for the spawn
    /// and removed again afterwards.
    fn spawn_through_std(&self, cmd: &mut Command, placement: Placement) -> io::Result<Child> {
        if self.convention == Convention::Systemd {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the systemd convention writes LISTEN_PID between fork and exec, which only \
                 sockpair's own spawn path can do; it cannot honour this Command's stdio, uid, \
                 gid, process group or arg0 (set only program, args, env and cwd)",
            ));
        }
        let vars = self.convention.vars(self.child_fd);
        for (name, value) in &vars {
            if let Value::Text(text) = value {
                cmd.env(name, text);
            }
        }
        let source = Arc::new(AtomicI32::new(placement.source));
        place_fd_in(cmd, source.clone(), placement);
        let spawned = cmd.spawn();
        source.store(-1, Ordering::Release);
        for (name, _) in &vars {
            cmd.env_remove(name);
        }
        Ok(Child::from_std(spawned?))
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
