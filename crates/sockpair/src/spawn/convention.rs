//! [`Convention`]: how a child learns where its end is.

use std::io;

/// How the child learns where its end is: the environment variables of one ecosystem.
///
/// ```
/// use sockpair::{Convention, SpawnOptions};
///
/// let mut options = SpawnOptions::new();
/// options.convention(Convention::Plain { env: "MY_END".into() }); // MY_END=3
/// # let _ = options;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Convention {
    /// `env`=the descriptor number, for programs of your own; read it with
    /// [`Socket::from_inherited`](crate::Socket::from_inherited). The default uses
    /// `SOCKPAIR_FD`. The name must be non-empty and hold neither `=` nor NUL.
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
    /// environment between fork and exec. Only sockpair's own spawn path can do that:
    /// [`SpawnOptions::spawn_program`](crate::SpawnOptions::spawn_program).
    Systemd,
    /// Wayland: `WAYLAND_SOCKET`=the number, as compositors hand a connection to the
    /// clients they launch.
    Wayland,
    /// No variable at all: the child knows where its end is (on its stdin, say, as
    /// `sockpair pipe` puts it).
    None,
}

impl Default for Convention {
    fn default() -> Self {
        Convention::Plain {
            env: "SOCKPAIR_FD".to_owned(),
        }
    }
}

/// A variable the convention sets: a fixed value, or the child's pid.
pub(super) enum Value {
    Text(String),
    ChildPid,
}

impl Convention {
    /// Refuses a `Plain` variable name that no environment can hold.
    pub(super) fn check(&self) -> io::Result<()> {
        if let Convention::Plain { env } = self
            && (env.is_empty() || env.contains(['=', '\0']))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the variable name {env:?} cannot be set: a name must be non-empty and \
                     hold neither '=' nor NUL"
                ),
            ));
        }
        Ok(())
    }

    /// The variables this convention sets for a child whose end is at `fd`.
    pub(super) fn vars(&self, fd: i32) -> Vec<(&str, Value)> {
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
            Convention::None => Vec::new(),
        }
    }

    /// Variables a parent of this convention must not pass on from its own environment.
    pub(super) fn stale_vars(&self) -> &'static [&'static str] {
        match self {
            // Newer libsystemd checks LISTEN_PIDFDID when present; ours would be wrong.
            Convention::Systemd => &["LISTEN_PIDFDID"],
            _ => &[],
        }
    }
}
