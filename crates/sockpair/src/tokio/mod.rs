//! The async twin, on tokio (feature `tokio`): [`AsyncSocket`], [`AsyncChannel`] with its
//! halves [`AsyncSender`] and [`AsyncReceiver`] (a `Stream`), and
//! [`Child::wait_async`](crate::Child::wait_async).
//!
//! The channel is the blocking [`Channel`](crate::Channel)'s transport cores, the same
//! state machines without system calls, driven by tokio's reactor instead of `poll`: the
//! same framings, limits, errors and descriptor rules, and the same bytes on the wire,
//! so either end may be blocking or async. Each operation is tried without blocking,
//! and a task waits on the reactor only when the kernel says `EAGAIN`. What
//! cancelling a send or a receive leaves behind is set out in
//! [cancel safety](AsyncChannel#cancel-safety).
//!
//! A parent on tokio talking to a blocking child, the child being this same program
//! started again (`examples/async.rs` has the whole program):
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use sockpair::tokio::AsyncChannel;
//! use sockpair::{Program, SpawnOptions};
//!
//! let me = std::env::current_exe()?;
//! let (mut child, socket) = SpawnOptions::new().spawn_program(Program::new(me).arg("child"))?;
//! let mut channel: AsyncChannel<String> = AsyncChannel::new(socket)?;
//! channel.send("Hello from parent").await?;
//! println!("Parent received: {}", channel.recv().await?.unwrap_or_default());
//! drop(channel);
//! child.wait_async().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The runtime must have I/O enabled (`enable_io`, or `enable_all`); waiting for a child
//! on a kernel without pidfds, and timeouts, also need its timer.
//!
//! # smol
//!
//! Not yet. The runtime-specific part here is one function, `AsyncSocket::poll_io`
//! (readiness, try, clear readiness on `EAGAIN`), and async-io's `Async<Socket>` could
//! play tokio's `AsyncFd` in it. But the public types would need a second set (or a
//! runtime parameter on each), and async-io run inside a tokio program starts a second
//! reactor thread; that is a design decision for its own issue, not one file.

mod channel;
mod child;
mod reactor;
mod socket;

pub use channel::{AsyncChannel, AsyncReceiver, AsyncSender};
pub use socket::AsyncSocket;
