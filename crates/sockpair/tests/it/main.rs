//! Integration tests against the real kernel: real pairs, real processes.

mod channel;
mod channel_faults;
mod child_mode;
mod cred;
mod fds;
mod feed;
mod fork;
#[cfg(feature = "worker")]
mod forkserver;
mod interop;
mod io;
mod pair;
mod shm;
mod spawn;
#[cfg(feature = "tokio")]
mod tokio;
mod util;
#[cfg(feature = "worker")]
mod worker;

#[cfg(feature = "worker")]
sockpair::worker::init_before_main!();

#[global_allocator]
static ALLOCATOR: feed::counting::Counting = feed::counting::Counting;
