//! The fd plan: where each descriptor goes in the child, prepared by the parent and
//! carried out in the child with async-signal-safe calls only.

use std::ffi::c_int;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::{Step, errno, nofile_limit};

/// One descriptor to put in the child: `source` here becomes `target` there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Move {
    pub source: RawFd,
    pub target: RawFd,
}

/// What happens to the child's descriptors, prepared by the parent so that the child's
/// part is a few system calls in any order.
#[derive(Debug)]
pub(crate) struct FdPlan {
    /// No source is below 3 (std may have replaced stdio by then) or another move's
    /// target (a `dup2` onto it would destroy it before its own move).
    moves: Vec<Move>,
    /// Every target from 3 up, sorted: the descriptors that `close_others` spares.
    kept: Vec<u32>,
    close_others: bool,
    /// If not 0, the pid of this process: the child asks for `SIGKILL` when the thread
    /// that started it dies (`PR_SET_PDEATHSIG`), and gives up if that already happened.
    die_with: libc::pid_t,
    /// Highest descriptor to mark close-on-exec if `close_range` is missing.
    max_fd: c_int,
    /// Copies made so that no source is in the way of another move (see `moves`).
    _copies: Vec<OwnedFd>,
}

impl FdPlan {
    /// A plan that puts each `(fd, target)` at `target`, the targets all different
    /// (the caller checks that, to say which collide).
    pub(crate) fn new(
        moves: &[(BorrowedFd<'_>, RawFd)],
        close_others: bool,
        die_with_parent: bool,
    ) -> io::Result<FdPlan> {
        let above = moves
            .iter()
            .map(|&(_, target)| target)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
            .max(3);
        let mut copies = Vec::new();
        let mut planned = Vec::with_capacity(moves.len());
        for &(fd, target) in moves {
            let source = fd.as_raw_fd();
            let in_the_way = moves
                .iter()
                .any(|&(_, other)| other == source && other != target);
            let source = if source < 3 || in_the_way {
                let copy = rustix::io::fcntl_dupfd_cloexec(fd, above)?;
                let number = copy.as_raw_fd();
                copies.push(copy);
                number
            } else {
                source
            };
            planned.push(Move { source, target });
        }
        let mut kept: Vec<u32> = planned
            .iter()
            .filter(|m| m.target >= 3)
            .map(|m| m.target as u32)
            .collect();
        kept.sort_unstable();
        Ok(FdPlan {
            moves: planned,
            kept,
            close_others,
            die_with: if die_with_parent {
                std::process::id() as libc::pid_t
            } else {
                0
            },
            max_fd: max_fd(),
            _copies: copies,
        })
    }
}

/// Carries out `plan` in the child: the parent-death signal, each move without
/// close-on-exec, and every other descriptor from 3 up marked close-on-exec if asked.
/// Async-signal-safe; returns the step that failed and its errno.
pub(super) fn carry_out(plan: &FdPlan) -> Result<(), (Step, c_int)> {
    if plan.die_with != 0 {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == -1 {
            return Err((Step::DieWithParent, errno()));
        }
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != plan.die_with {
            return Err((Step::DieWithParent, libc::ESRCH)); // the parent is already gone
        }
    }
    for &Move { source, target } in &plan.moves {
        let rc = if source == target {
            // dup2(n, n) would do nothing and leave close-on-exec set.
            // SAFETY: plain fcntl on a descriptor number.
            unsafe { libc::fcntl(target, libc::F_SETFD, 0) }
        } else {
            // SAFETY: plain dup2 on descriptor numbers; the copy is not close-on-exec.
            unsafe { libc::dup2(source, target) }
        };
        if rc == -1 {
            return Err((Step::PlaceFd(target), errno()));
        }
    }
    if plan.close_others {
        let mut first = 3u32;
        for &kept in &plan.kept {
            if kept > first {
                cloexec_range(first, kept - 1, plan.max_fd);
            }
            first = kept + 1;
        }
        cloexec_range(first, u32::MAX, plan.max_fd);
    }
    Ok(())
}

/// Marks descriptors `first..=last` close-on-exec: one `close_range` call on Linux 5.11
/// and later, else `fcntl` on each up to `max_fd`.
fn cloexec_range(first: u32, last: u32, max_fd: c_int) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return;
    }
    let last = last.min(max_fd.max(0) as u32);
    for fd in first..=last {
        // SAFETY: plain fcntl on a descriptor number; EBADF for closed ones is harmless.
        unsafe { libc::fcntl(fd as c_int, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The highest descriptor number this process may have, for the fallback when
/// `close_range` is missing.
fn max_fd() -> c_int {
    nofile_limit().min(c_int::MAX as u64) as c_int - 1
}
