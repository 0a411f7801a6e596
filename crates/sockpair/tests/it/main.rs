//! Integration tests against the real kernel: real pairs, real processes.

mod cred;
mod fds;
mod fork;
mod io;
mod pair;
mod util;
