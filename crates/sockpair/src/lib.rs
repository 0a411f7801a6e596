//! Anonymous, pre-connected socket pairs (`socketpair(2)`) and the job they exist for: a
//! private, two-way channel between a parent process and its child.
//!
//! Start a program with its end of a new pair, and talk to it in whole messages:
//!
//! ```
//! use sockpair::{Channel, Framing, Program, SpawnOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The child gets its end at fd 3 (and SOCKPAIR_FD=3), no other descriptor of ours.
//! let mut program = Program::new("sh");
//! program.args(["-c", r#"while read -r line <&3; do echo "got $line" >&3; done"#]);
//! let (mut child, socket) = SpawnOptions::new().kill_on_drop(true).spawn_program(&program)?;
//!
//! // One message per line, as a shell reads and writes them.
//! let mut channel: Channel<String> = Channel::with_framing(socket, Framing::Lines)?;
//! channel.send("hello")?;
//! assert_eq!(channel.recv()?.as_deref(), Some("got hello"));
//!
//! drop(channel); // the child reads the end of the stream and exits
//! assert!(child.wait()?.success());
//! # Ok(())
//! # }
//! ```
//!
//! Nothing here needs `unsafe`: the end is close-on-exec everywhere but in that child,
//! the parent's copy of the child's end is closed before `spawn_program` returns (so the
//! child's death is the end of the stream, never a hang), and a message is a frame the
//! peer reads whole. A Rust child finds its end with [`Socket::from_inherited`]; a Python
//! child with `multiprocessing.connection.Connection(3)`, which speaks [`Channel`]'s
//! default framing as is; a Node child with [`Convention::Node`].
//!
//! # What is here
//!
//! | C | sockpair |
//! |---|---|
//! | `socketpair(AF_UNIX, SOCK_STREAM \| SOCK_CLOEXEC, 0, sv)` | [`pair`]`(Type::STREAM)` |
//! | `socketpair(domain, type \| flags, protocol, sv)` | [`pair_with`]`(domain, ty, flags, protocol)` |
//! | `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET` | [`Type::STREAM`], [`Type::DGRAM`], [`Type::SEQPACKET`] |
//! | `SOCK_CLOEXEC`, `SOCK_NONBLOCK` | [`Flags::CLOEXEC`], [`Flags::NONBLOCK`] |
//! | `fork()` + closing the other end | [`fork`] |
//! | `read`/`write` | [`Socket::recv`]/[`Socket::send`], [`std::io::Read`]/[`std::io::Write`] |
//! | `sendmsg`/`recvmsg` with `SCM_RIGHTS` | [`Socket::send_with_fds`]/[`Socket::recv_with_fds`] |
//! | `getsockopt(SO_PEERCRED)` | [`Socket::peer_cred`] |
//! | `waitpid` | [`Child::wait`], [`Child::wait_timeout`], [`Child::kill`] |
//! | `fork` + `dup2(end, 3)` + `execve`, with `SOCKPAIR_FD=3` | [`SpawnOptions::spawn_program`], [`SpawnOptions::spawn`] |
//! | the child's `atoi(getenv("SOCKPAIR_FD"))` | [`Socket::from_inherited`] |
//!
//! # Handing an end to a program
//!
//! [`SpawnOptions`] starts any program with its end at a chosen descriptor (3 by
//! default), announced by an environment variable in the [`Convention`] of its ecosystem:
//! plain `SOCKPAIR_FD`, Node.js's `NODE_CHANNEL_FD`, systemd's `LISTEN_FDS`/`LISTEN_PID`,
//! Wayland's `WAYLAND_SOCKET`. The child gets its stdio, its end and the descriptors you
//! name ([`SpawnOptions::fd`]), nothing else, and no other child gets its end. Start a
//! [`Program`] ([`SpawnOptions::spawn_program`]) and it starts as fast as std's plain
//! spawn, even from a large parent; start a `Command` ([`SpawnOptions::spawn`]) and
//! everything it says is honoured, your `pre_exec` closures included. Whether the child's
//! end takes descriptors is decided before it exists ([`SpawnOptions::accept_fds`]), and
//! [`SpawnOptions::kill_on_drop`] leaves no orphan. A program that does not start is a
//! [`SpawnError`] naming it, the step that failed and the kernel's errno.
//!
//! # Messages
//!
//! A [`Channel`] carries whole messages over one end: `Vec<u8>` (sent from any `&[u8]`),
//! `String` (from any `&str`), your own [`Encode`]/[`Decode`] types, or with the `serde`
//! feature any serde type as `Json<T>` or `Postcard<T>` (sent from a `&T`, received as a
//! `T`), each with descriptors if the receiving end
//! [accepts them](Channel::accept_fds). On a stream the frame is a 4-byte big-endian
//! length and the payload, which Python's `multiprocessing.connection` speaks as is;
//! [`Framing::Lines`] speaks Node's IPC channel; on seqpacket and datagram sockets one
//! record is one message. Frames over a limit are refused before anything is allocated,
//! memory is spent only as bytes arrive, and timeouts bound every wait.
//! [`Channel::split`] gives a [`Sender`] and a [`Receiver`] for two threads. Each
//! transport is a state machine without system calls, which one driver runs for the
//! blocking and the async channel alike. The format, for other languages:
//! [`frame::wire_format`]. [`frame`] has the framing alone, over any `Read`/`Write`.
//!
//! # Async
//!
//! With the `tokio` feature, `sockpair::tokio` has the async twin: `AsyncSocket`,
//! `AsyncChannel` (halves `AsyncSender` and `AsyncReceiver`, a `Stream`) and
//! `Child::wait_async`. It drives the same transport state machines as the blocking
//! [`Channel`], so the two understand each other byte for byte, and its receives are
//! cancel safe.
//!
//! # Running a function in a child
//!
//! With the `worker` feature, `sockpair::worker` runs a Rust `fn(A) -> R` in a child
//! process: `worker::spawn(f, arg)?.join()` gives the result, or an error naming what
//! happened instead (a panic and its message, an exit, an abort, a kill, a value that
//! did not survive serde), never a hang; `join_timeout` gives up and leaves the worker
//! for `kill`. The child is forked by a fork server, this executable started again once
//! (small and single-threaded, so that a spawn is cheap and safe from any parent), or
//! started again itself with `worker::Options::exec`; either way it has its end at fd 3
//! and no other descriptor, and `main` calls `worker::init()` first (forgetting it is an
//! error from `spawn`, not a process that runs `main` again). A `worker::Pool` reuses
//! `n` workers, and one that dies fails only its task. `sockpair::shm` hands large
//! messages over as sealed shared memory, without a copy.
//!
//! # The classic pattern: fork
//!
//! The fork-and-talk example of *The Linux Programming Interface* (§57.5): create a pair,
//! fork, and talk both ways. The child closes the parent's end, reads, answers; the
//! parent closes the child's end, writes, reads the answer, and waits for the child. It
//! prints exactly `Child received: Hello from parent` then
//! `Parent received: Hello from child`. [`fork`] is `unsafe`: after `fork` in a program
//! with threads, the child may only make async-signal-safe calls.
//!
//! ```
#![doc = include_str!("../examples/demo.rs")]
//! ```
//!
//! # When the other side dies
//!
//! Peer death is never a hang, provided every copy of the dead side's end is gone, which
//! [`fork`] and [`SpawnOptions`] ensure by closing the parent's copy of the
//! child's end: a stream or seqpacket end then reads EOF (or `ECONNRESET` once, if the
//! child died with data of ours unread), and writes fail with `EPIPE`, never `SIGPIPE`.
//! A datagram pair has no EOF: watch the [`Child`] instead ([`Child::wait_timeout`]).
//!
//! System calls return [`std::io::Result`] with the kernel's errno untouched. Every
//! descriptor is owned ([`std::os::fd::OwnedFd`]) from the moment it exists, and is
//! close-on-exec unless you ask otherwise.
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `serde` | `Json<T>` and `Postcard<T>` messages (serde_json, postcard) |
//! | `tokio` | `sockpair::tokio`: the async twin |
//! | `worker` | `sockpair::worker`: a Rust function in a child process (implies `serde`) |
//!
//! # Platforms
//!
//! Linux only (seqpacket pairs, `SOCK_CLOEXEC`, `MSG_CMSG_CLOEXEC`, `clone`, pidfds,
//! sealed memfds): on any other target the crate does not compile, with a message
//! saying so. Kernels from 5.2 on are supported; newer ones add pidfds (5.3),
//! `close_range` (5.11) and `SO_PASSRIGHTS` (6.16), each with a fallback before it.
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::exit)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "sockpair supports Linux only: it is built on Linux's socketpair flags \
     (SOCK_CLOEXEC, MSG_CMSG_CLOEXEC), clone, pidfds and sealed memfds"
);

mod channel;
mod child;
mod cred;
mod error;
#[cfg(feature = "worker")]
mod exe;
mod fds;
mod fork;
pub mod frame;
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod fuzz;
mod message;
#[cfg(feature = "worker")]
mod shared_word;
pub mod shm;
mod socket;
mod spawn;
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;
mod types;
mod wait;
#[cfg(feature = "worker")]
pub mod worker;

pub use channel::{Channel, Messages, Receiver, Sender};
pub use child::Child;
pub use cred::PeerCred;
pub use error::{Error, ErrorKind};
pub use fds::MAX_FDS_PER_MESSAGE;
pub use fork::{Fork, exit_immediately, fork};
pub use frame::Framing;
pub use message::{Decode, Encode, EncodeAs, Receive};
#[cfg(feature = "serde")]
pub use message::{Json, Postcard};
pub use socket::{Socket, pair, pair_with};
pub use spawn::{Convention, Program, SpawnError, SpawnOptions};
pub use types::{Domain, Flags, Protocol, Type};

/// Runs `$f` (a `fn()`) before `main`, from the executable's `.init_array`: the one way
/// sockpair runs code in an executable started again as a child before its `main`
/// (whose `main` may be a test harness's). [`worker::init_before_main!`] is built on it,
/// and the test binaries' child modes use it too. Not a stable API.
#[macro_export]
#[doc(hidden)]
macro_rules! __run_before_main {
    ($f:path) => {
        const _: () = {
            // Placing a function pointer in `.init_array` is what that section is for:
            // the loader calls each entry once, before `main`, with no arguments; the
            // entry is an `extern "C" fn()` as the loader calls it, and calls `$f`.
            #[allow(unsafe_code)]
            #[used]
            #[unsafe(link_section = ".init_array")]
            static RUN_BEFORE_MAIN: extern "C" fn() = {
                extern "C" fn run_before_main() {
                    $f();
                }
                run_before_main
            };
        };
    };
}

/// The README's examples, compiled and run as doc tests (they need tokio and worker).
#[cfg(all(doctest, feature = "tokio", feature = "worker"))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
