//! Awaiting a [`Child`]'s exit: its pidfd, readable once it exits, on tokio's reactor.

use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags};
use tokio::io::Interest;

use super::reactor::register;
use crate::child::Child;

impl Child {
    /// Waits for the child to exit without blocking the runtime, and reaps it; the async
    /// [`wait`](Child::wait) (which closes the child's stdin pipe first, if any).
    /// Cancel safe: dropped, the child is neither killed nor reaped, and a later wait
    /// still gets its status.
    ///
    /// The wait is the child's pidfd (Linux 5.3) on tokio's reactor. Before 5.3, or
    /// when this process is out of descriptors, it checks with `waitpid(WNOHANG)` at
    /// intervals growing from 1 ms to 20 ms, on the runtime's timer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use sockpair::{Program, SpawnOptions};
    ///
    /// let (mut child, _socket) = SpawnOptions::new().spawn_program(&Program::new("true"))?;
    /// assert!(child.wait_async().await?.success());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The kernel's error from `pidfd_open` or `waitpid`; [`io::ErrorKind::Other`]
    /// outside a tokio runtime.
    ///
    /// # Panics
    ///
    /// In a runtime built without I/O, as tokio's `AsyncFd` does (and, on kernels
    /// without pidfds, without its timer).
    pub async fn wait_async(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        self.exit().await
    }

    /// Waits at most `timeout` for the child to exit, reaping it if it did; `Ok(None)`
    /// if it still runs. The async [`wait_timeout`](Child::wait_timeout): any `timeout`
    /// works, `Duration::MAX` included; cancel safe as
    /// [`wait_async`](Child::wait_async).
    ///
    /// # Errors
    ///
    /// As [`wait_async`](Child::wait_async).
    ///
    /// # Panics
    ///
    /// As `tokio::time::timeout`: in a runtime built without its timer (`enable_time`).
    pub async fn wait_timeout_async(
        &mut self,
        timeout: Duration,
    ) -> io::Result<Option<ExitStatus>> {
        match tokio::time::timeout(timeout, self.exit()).await {
            Ok(exited) => exited.map(Some),
            Err(_elapsed) => Ok(None),
        }
    }

    async fn exit(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let pid = Pid::from_raw(self.id() as i32).expect("a child's pid is positive");
        let pidfd: OwnedFd = match rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK) {
            Ok(pidfd) => pidfd,
            // No pidfds (before 5.3), or no descriptor free for one: poll instead.
            Err(Errno::NOSYS | Errno::MFILE | Errno::NFILE) => return self.exit_polling().await,
            Err(err) => return Err(err.into()),
        };
        let pidfd = register(pidfd, Interest::READABLE)?;
        loop {
            let mut exited = pidfd.readable().await?;
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            exited.clear_ready();
        }
    }

    /// [`exit`](Child::exit) without a pidfd.
    async fn exit_polling(&mut self) -> io::Result<ExitStatus> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}
