//! Starting a program with one descriptor placed at a chosen number, without copying the
//! parent's page tables: `clone(CLONE_VM | CLONE_VFORK)` then `execve`, as `posix_spawn`
//! does, plus the one thing `posix_spawn` cannot do: write the child's own pid into its
//! environment (systemd's `LISTEN_PID`) between the clone and the exec.
//!
//! Everything the child needs (paths, argv, envp, a stack) is allocated by the parent
//! before the clone. The child shares the parent's memory until it execs, so it runs only
//! raw, async-signal-safe system calls, allocates nothing and cannot panic; the parent
//! thread is suspended meanwhile (`CLONE_VFORK`), with every signal blocked so that no
//! handler of the parent's can run on the child's borrowed stack.

use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

/// Where the child's descriptor goes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    /// The descriptor in the parent (close-on-exec there).
    pub source: RawFd,
    /// Its number in the child, at least 3.
    pub target: RawFd,
    /// Mark every other descriptor from 3 up close-on-exec, so the child gets only its
    /// stdio and this one.
    pub close_others: bool,
    /// If not 0, the pid of this process: the child asks for `SIGKILL` when the thread
    /// that started it dies (`PR_SET_PDEATHSIG`), and gives up if that already happened.
    pub die_with: libc::pid_t,
}

/// A program to start directly, prepared by the caller.
#[derive(Debug)]
pub(crate) struct Exec {
    /// Paths to try in order (the `PATH` search is done by the caller).
    pub programs: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Index in `envp` of an entry `NAME=` followed by room for a pid (`0`s), which the
    /// child overwrites with its pid in decimal.
    pub pid_slot: Option<usize>,
    pub cwd: Option<CString>,
    pub placement: Placement,
}

/// What the child reads: raw pointers into buffers the parent keeps alive.
struct ChildContext {
    programs: Vec<*const c_char>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// Start and length of the pid's room in the `LISTEN_PID=` entry.
    pid_slot: Option<(*mut u8, usize)>,
    cwd: *const c_char,
    placement: Placement,
    /// Highest descriptor to mark close-on-exec if `close_range` is missing.
    max_fd: c_int,
    /// The child stores the errno of the step that failed here, then exits.
    errno: AtomicI32,
}

const STACK_SIZE: usize = 64 * 1024;

/// Starts `exec` and returns the child's pid once it has called `execve` successfully.
///
/// # Errors
///
/// The errno of the step that failed in the child (`chdir`, placing the descriptor,
/// `execve`: `ENOENT` when no candidate path exists, `EACCES` when one was not
/// executable), or of `clone` itself. A child that failed has been reaped.
pub(crate) fn spawn(exec: Exec) -> io::Result<i32> {
    // Byte buffers the child may write into (the pid slot), with their pointers.
    let mut envp: Vec<Vec<u8>> = exec
        .envp
        .into_iter()
        .map(CString::into_bytes_with_nul)
        .collect();
    let pid_slot = match exec.pid_slot {
        Some(index) => {
            let entry = &mut envp[index];
            let start = entry.iter().position(|&b| b == b'=').map_or(0, |eq| eq + 1);
            let room = entry.len() - 1 - start; // excluding the NUL
            // SAFETY: `start` is within `entry`, which outlives the child's use of it.
            Some((unsafe { entry.as_mut_ptr().add(start) }, room))
        }
        None => None,
    };
    let with_null = |strings: &[CString]| -> Vec<*const c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain([ptr::null()])
            .collect()
    };
    let context = ChildContext {
        programs: exec.programs.iter().map(|s| s.as_ptr()).collect(),
        argv: with_null(&exec.argv),
        envp: envp
            .iter()
            .map(|e| e.as_ptr().cast::<c_char>())
            .chain([ptr::null()])
            .collect(),
        pid_slot,
        cwd: exec.cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        placement: exec.placement,
        max_fd: max_fd(),
        errno: AtomicI32::new(0),
    };
    let mut stack: Vec<MaybeUninit<u8>> = Vec::with_capacity(STACK_SIZE);
    // The stack grows down from its highest 16-byte-aligned address.
    let top = (stack.as_mut_ptr() as usize + STACK_SIZE) & !15;

    let mut all: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    let mut old: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads it and fills `old`.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
    }
    // SAFETY: `child_main` is async-signal-safe and reads only `context`, which lives
    // until after the clone returns; CLONE_VFORK suspends this thread until the child
    // has exec'd or exited, so the child's use of `context` and `stack` is over by then.
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const context).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: `old` was filled by the pthread_sigmask call above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut()) };
    if pid == -1 {
        return Err(clone_error);
    }
    drop(stack);
    match context.errno.load(Ordering::Acquire) {
        0 => Ok(pid),
        errno => {
            let mut status = 0;
            // SAFETY: reaping our own child, which has exited with 127.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// The child side of `spawn`: only raw system calls, no allocation, no panics.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildContext`, alive and unchanged while we run.
    let context = unsafe { &*arg.cast::<ChildContext>() };
    let fail = |errno: c_int| -> c_int {
        context.errno.store(errno.max(1), Ordering::Release);
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(127) }
    };
    reset_signals();
    if !context.cwd.is_null() {
        // SAFETY: `cwd` points to a NUL-terminated path the parent keeps alive.
        if unsafe { libc::chdir(context.cwd) } == -1 {
            return fail(errno());
        }
    }
    if let Err(errno) = place_fd(context.placement, context.max_fd) {
        return fail(errno);
    }
    if let Some((slot, room)) = context.pid_slot {
        // SAFETY: `slot` has `room` writable bytes followed by a NUL, owned by the
        // parent's buffer that nothing else touches while we run.
        unsafe { write_pid(slot, room) };
    }
    let mut last = libc::ENOENT;
    let mut denied = false;
    for &program in &context.programs {
        // SAFETY: `program`, `argv` and `envp` are NUL-terminated strings and
        // NULL-terminated arrays of them, alive until we exec or exit.
        unsafe { libc::execve(program, context.argv.as_ptr(), context.envp.as_ptr()) };
        last = errno();
        denied |= last == libc::EACCES;
        // Like execvp: a missing or unusable candidate means try the next directory.
        if !matches!(
            last,
            libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::ELOOP | libc::ENAMETOOLONG
        ) {
            break;
        }
    }
    fail(if denied && last == libc::ENOENT {
        libc::EACCES
    } else {
        last
    })
}

/// The calling thread's errno.
fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *libc::__errno_location() }
}

/// Gives the child a clean signal state: handlers back to the default (so no handler of
/// the parent's can run before the exec), `SIGPIPE` back to the default (Rust programs
/// ignore it, and an ignored signal stays ignored across exec, as std's own spawn also
/// undoes), and an empty signal mask.
fn reset_signals() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut action: MaybeUninit<libc::sigaction> = MaybeUninit::zeroed();
        // SAFETY: reading the current action into a zeroed sigaction.
        if unsafe { libc::sigaction(signal, ptr::null(), action.as_mut_ptr()) } != 0 {
            continue;
        }
        // SAFETY: filled by the successful sigaction above.
        let handler = unsafe { action.assume_init_ref() }.sa_sigaction;
        if signal == libc::SIGPIPE || (handler != libc::SIG_DFL && handler != libc::SIG_IGN) {
            let mut default = zeroed_sigaction();
            default.sa_sigaction = libc::SIG_DFL;
            // SAFETY: installing the default action for a catchable signal.
            unsafe { libc::sigaction(signal, &default, ptr::null_mut()) };
        }
    }
    let mut empty: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    // SAFETY: sigemptyset initialises `empty` before sigprocmask reads it.
    unsafe {
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), ptr::null_mut());
    }
}

fn zeroed_sigaction() -> libc::sigaction {
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, no flags, empty mask).
    unsafe { MaybeUninit::zeroed().assume_init() }
}

/// Puts `placement.source` at `placement.target` without close-on-exec, and marks every
/// other descriptor from 3 up close-on-exec if asked. Async-signal-safe; returns errno.
fn place_fd(placement: Placement, max_fd: c_int) -> Result<(), c_int> {
    let Placement {
        source,
        target,
        close_others,
        die_with,
    } = placement;
    if die_with != 0 {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == -1 {
            return Err(errno());
        }
        // SAFETY: getppid has no preconditions.
        if unsafe { libc::getppid() } != die_with {
            return Err(libc::ESRCH); // the parent is already gone
        }
    }
    if source == target {
        // dup2(n, n) would do nothing and leave close-on-exec set.
        // SAFETY: plain fcntl on a descriptor number.
        if unsafe { libc::fcntl(target, libc::F_SETFD, 0) } == -1 {
            return Err(errno());
        }
    } else {
        // SAFETY: plain dup2 on descriptor numbers; the copy is not close-on-exec.
        if unsafe { libc::dup2(source, target) } == -1 {
            return Err(errno());
        }
    }
    if close_others {
        if target > 3 {
            cloexec_range(3, target as u32 - 1, max_fd);
        }
        cloexec_range(target as u32 + 1, u32::MAX, max_fd);
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

/// Writes the calling process's pid in decimal at `slot` followed by a NUL.
///
/// # Safety
///
/// `slot` must point to `room` writable bytes followed by one more.
unsafe fn write_pid(slot: *mut u8, room: usize) {
    // SAFETY: getpid has no preconditions (glibc does not cache it).
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (pid % 10) as u8;
        len += 1;
        pid /= 10;
        if pid == 0 || len == digits.len() {
            break;
        }
    }
    let len = len.min(room);
    for i in 0..len {
        // SAFETY: i < len <= room, within the caller's slot.
        unsafe { *slot.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: len <= room, and the byte after the room is ours too.
    unsafe { *slot.add(len) = 0 };
}

/// The highest descriptor number this process may have (`RLIMIT_NOFILE`), for the
/// fallback when `close_range` is missing.
fn max_fd() -> c_int {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit
        .current
        .map_or(c_int::MAX, |n| n.min(c_int::MAX as u64) as c_int)
        - 1
}

/// Makes `cmd` place the descriptor in its child, for spawns that must go through std
/// (stdio, uid and the like set on the `Command`). `source` holds the parent's
/// descriptor; set it to -1 once the spawn is over, so that a later spawn of the same
/// `Command` finds the closure inert instead of placing a stale descriptor number.
pub(crate) fn place_fd_in(cmd: &mut Command, source: Arc<AtomicI32>, placement: Placement) {
    let max_fd = max_fd();
    let hook = move || {
        let source = source.load(Ordering::Acquire);
        if source < 0 {
            return Ok(());
        }
        place_fd(
            Placement {
                source,
                ..placement
            },
            max_fd,
        )
        .map_err(io::Error::from_raw_os_error)
    };
    // SAFETY: the hook is async-signal-safe: an atomic load and raw system calls, no
    // allocation (an OS error value does not allocate).
    unsafe { cmd.pre_exec(hook) };
}
