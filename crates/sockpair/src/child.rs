//! [`Child`]: a process started by [`fork`](crate::fork) or
//! [`SpawnOptions::spawn`](crate::SpawnOptions::spawn), to wait for or kill.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};

use crate::wait::{Events, poll_until};

/// A child process: its pid, its exit status once reaped, and the pipes to its stdio
/// that the `Command` asked for (as in [`std::process::Child`]).
///
/// **Who reaps**: the owner of the `Child`. Call [`wait`](Child::wait) (or
/// [`wait_timeout`](Child::wait_timeout) and [`kill`](Child::kill)). By default dropping
/// it neither kills nor reaps the process, exactly as with std's `Child`: a child that
/// exits and is never waited for stays a zombie until this process exits. Started with
/// [`SpawnOptions::kill_on_drop`](crate::SpawnOptions::kill_on_drop), dropping it kills
/// the process (`SIGKILL`) if it still runs, and reaps it.
///
/// ```
/// use sockpair::{Program, SpawnOptions};
///
/// let (child, _socket) = SpawnOptions::new()
///     .kill_on_drop(true)
///     .spawn_program(Program::new("sleep").arg("600"))?;
/// let pid = child.id();
/// drop(child); // killed and reaped: no process, no zombie
/// assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    status: Option<ExitStatus>,
    kill_on_drop: bool,
    /// The writing end of the child's stdin, if the `Command` set `Stdio::piped()`.
    pub stdin: Option<ChildStdin>,
    /// The reading end of the child's stdout, if the `Command` set `Stdio::piped()`.
    pub stdout: Option<ChildStdout>,
    /// The reading end of the child's stderr, if the `Command` set `Stdio::piped()`.
    pub stderr: Option<ChildStderr>,
}

impl Child {
    /// A child known by its pid (a positive number, from `fork` or `clone`).
    pub(crate) fn from_pid(pid: i32, kill_on_drop: bool) -> Child {
        Child::new(pid, kill_on_drop, None, None, None)
    }

    /// Takes over a child that std started; std's `Child` neither waits nor kills on drop.
    pub(crate) fn from_std(mut child: std::process::Child, kill_on_drop: bool) -> Child {
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        Child::new(child.id() as i32, kill_on_drop, stdin, stdout, stderr)
    }

    fn new(
        pid: i32,
        kill_on_drop: bool,
        stdin: Option<ChildStdin>,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) -> Child {
        Child {
            pid: Pid::from_raw(pid).expect("a child's pid is positive"),
            status: None,
            kill_on_drop,
            stdin,
            stdout,
            stderr,
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.pid.as_raw_pid() as u32
    }

    /// Waits for the child to exit and reaps it (`waitpid`); later calls return the same
    /// status. Closes the child's stdin pipe first, if any, so it is not left waiting
    /// for input.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        self.reap(WaitOptions::empty())
            .map(|status| status.expect("a blocking waitpid returns a status"))
    }

    /// Reaps the child if it has exited, without blocking (`waitpid(WNOHANG)`).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(WaitOptions::NOHANG)
    }

    /// Waits at most `timeout` for the child to exit, reaping it if it did; `Ok(None)` if
    /// it is still running. Any `timeout` works, `Duration::MAX` included.
    ///
    /// The wait is a `pidfd` (Linux 5.3) polled with the time left, so it wakes the moment
    /// the child exits. On older kernels (`pidfd_open` answers `ENOSYS`), or when this
    /// process is out of descriptors, it checks with `waitpid(WNOHANG)` at growing
    /// intervals (1 ms up to 20 ms), so it may return up to 20 ms after the exit there.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        // No deadline at all if `timeout` reaches past what an `Instant` can hold.
        let deadline = Instant::now().checked_add(timeout);
        let pidfd = match rustix::process::pidfd_open(self.pid, PidfdFlags::empty()) {
            Ok(pidfd) => pidfd,
            // No pidfds (before 5.3), or no descriptor free for one: poll instead.
            Err(Errno::NOSYS | Errno::MFILE | Errno::NFILE) => return self.wait_polling(deadline),
            Err(err) => return Err(err.into()),
        };
        match poll_until(&pidfd, Events::IN, deadline)? {
            true => self.try_wait(),
            false => Ok(None),
        }
    }

    /// [`wait_timeout`](Child::wait_timeout) without a pidfd: `waitpid(WNOHANG)` at
    /// intervals growing from 1 ms to 20 ms, until `deadline` (`None`: none).
    fn wait_polling(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        let mut pause = Duration::from_millis(1);
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            std::thread::sleep(left.map_or(pause, |left| left.min(pause)));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Kills the child with `SIGKILL`; does nothing if it was already reaped. Call
    /// [`wait`](Child::wait) afterwards to reap it.
    pub fn kill(&mut self) -> io::Result<()> {
        if self.status.is_none() {
            rustix::process::kill_process(self.pid, Signal::KILL)?;
        }
        Ok(())
    }

    fn reap(&mut self, options: WaitOptions) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            let reaped = loop {
                match rustix::process::waitpid(Some(self.pid), options) {
                    Err(Errno::INTR) => continue,
                    other => break other?,
                }
            };
            self.status = reaped.map(|(_, status)| ExitStatus::from_raw(status.as_raw()));
        }
        Ok(self.status)
    }
}

impl Drop for Child {
    /// With [`SpawnOptions::kill_on_drop`](crate::SpawnOptions::kill_on_drop): kills the
    /// process if it still runs, and reaps it. Otherwise nothing.
    fn drop(&mut self) {
        if self.kill_on_drop && self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The fallback for kernels without `pidfd_open`, driven directly (the test suite
    /// also runs under `scripts/old-kernel.py`, where `wait_timeout` takes it).
    #[test]
    fn waiting_without_a_pidfd_sees_the_exit_and_honours_the_deadline() {
        let sleeper = Command::new("sleep").arg("0.2").spawn().unwrap();
        let mut child = Child::from_std(sleeper, true);
        let started = Instant::now();
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(child.wait_polling(Some(soon)).unwrap(), None);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        assert!(waited < Duration::from_millis(150), "{waited:?}");
        let status = child.wait_polling(None).unwrap().expect("exited");
        assert!(status.success());
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        // Reaped: no zombie left.
        assert!(!std::path::Path::new(&format!("/proc/{}", child.id())).exists());
    }
}
