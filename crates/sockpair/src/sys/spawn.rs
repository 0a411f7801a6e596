//! Starting a program with descriptors placed at chosen numbers, two ways:
//!
//! - [`spawn`]: sockpair's own path, `clone(CLONE_VM | CLONE_VFORK)` then `execve`, as
//!   `posix_spawn` does, without copying the parent's page tables; plus what
//!   `posix_spawn` cannot do: write the child's own pid into its environment (systemd's
//!   `LISTEN_PID`) and ask for `PR_SET_PDEATHSIG` between the clone and the exec.
//! - [`spawn_std`]: std's `Command::spawn`, which honours everything a `Command` says,
//!   with one `pre_exec` hook that carries out the same [`FdPlan`].
//!
//! On the direct path everything the child needs (paths, argv, envp, a stack) is
//! allocated by the parent before the clone. The child shares the parent's memory until
//! it execs, so it runs only raw, async-signal-safe system calls, allocates nothing and
//! cannot panic; the parent thread is suspended meanwhile (`CLONE_VFORK`), with every
//! signal blocked so that no handler of the parent's can run on the child's borrowed
//! stack. The child shares the parent thread's TLS too, so the `errno` it reads after a
//! failed call is that slot: it copies the value out at once, before any other call.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

/// One descriptor to put in the child: `source` here becomes `target` there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Move {
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

/// The step of starting a child that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `clone` itself, in the parent.
    Clone,
    /// Changing to the working directory.
    Chdir,
    /// Joining or making the process group.
    ProcessGroup,
    /// `PR_SET_PDEATHSIG`, or the parent was already gone.
    DieWithParent,
    /// Putting a descriptor at this number.
    PlaceFd(RawFd),
    /// `execve` of every candidate path.
    Exec,
}

/// A failed start: which step, and the kernel's error.
#[derive(Debug)]
pub(crate) struct Failed {
    pub step: Step,
    pub error: io::Error,
}

/// A program to start directly, prepared by the caller.
#[derive(Debug)]
pub(crate) struct Exec<'a> {
    /// Paths to try in order (the `PATH` search is done by the caller).
    pub programs: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// Index in `envp` of an entry `NAME=` followed by room for a pid (`0`s), which the
    /// child overwrites with its pid in decimal.
    pub pid_slot: Option<usize>,
    pub cwd: Option<CString>,
    /// `setpgid(0, pgroup)`: 0 makes the child the leader of a new group.
    pub pgroup: Option<libc::pid_t>,
    pub plan: &'a FdPlan,
}

/// What the child reads: raw pointers into buffers the parent keeps alive.
struct ChildContext<'a> {
    programs: Vec<*const c_char>,
    argv: Vec<*const c_char>,
    /// `/bin/sh`, a slot for the program, then `argv[1..]`: for a file the kernel does
    /// not recognise (`ENOEXEC`), run as a shell script, as `execvp` (std's path) does.
    script_argv: *mut *const c_char,
    envp: Vec<*const c_char>,
    /// Start and length of the pid's room in the `LISTEN_PID=` entry.
    pid_slot: Option<(*mut u8, usize)>,
    cwd: *const c_char,
    pgroup: Option<libc::pid_t>,
    plan: &'a FdPlan,
    /// The child stores the step that failed and its errno here, then exits.
    failed_step: AtomicI32,
    errno: AtomicI32,
}

const STACK_SIZE: usize = 64 * 1024;

/// `/bin/sh`, for scripts without `#!`.
const SHELL: &std::ffi::CStr = c"/bin/sh";

/// Starts `exec` and returns the child's pid once it has called `execve` successfully.
///
/// # Errors
///
/// The step that failed in the child (or `clone` itself) with its errno: `execve` gives
/// `ENOENT` when no candidate path exists and `EACCES` when one was not executable. A
/// child that failed has been reaped.
pub(crate) fn spawn(exec: Exec<'_>) -> Result<i32, Failed> {
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
    let mut script_argv: Vec<*const c_char> = [SHELL.as_ptr(), ptr::null()]
        .into_iter()
        .chain(exec.argv.iter().skip(1).map(|s| s.as_ptr()))
        .chain([ptr::null()])
        .collect();
    let context = ChildContext {
        programs: exec.programs.iter().map(|s| s.as_ptr()).collect(),
        argv: with_null(&exec.argv),
        script_argv: script_argv.as_mut_ptr(),
        envp: envp
            .iter()
            .map(|e| e.as_ptr().cast::<c_char>())
            .chain([ptr::null()])
            .collect(),
        pid_slot,
        cwd: exec.cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        pgroup: exec.pgroup,
        plan: exec.plan,
        failed_step: AtomicI32::new(-1),
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
    // SAFETY: `child_main` is async-signal-safe and reads only `context` (through a
    // shared reference; it writes only through the atomics and the raw pointers into
    // `envp` and `script_argv`, buffers nothing else touches meanwhile), which lives
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
        return Err(Failed {
            step: Step::Clone,
            error: clone_error,
        });
    }
    drop(stack);
    drop(script_argv);
    match context.errno.load(Ordering::Acquire) {
        0 => Ok(pid),
        errno => {
            let mut status = 0;
            // SAFETY: reaping our own child, which has exited with 127.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            Err(Failed {
                step: decode_step(context.failed_step.load(Ordering::Acquire)),
                error: io::Error::from_raw_os_error(errno),
            })
        }
    }
}

/// The steps as the child stores them: small numbers, descriptor targets from 16 up.
fn encode_step(step: Step) -> i32 {
    match step {
        Step::Clone => 0,
        Step::Chdir => 1,
        Step::ProcessGroup => 2,
        Step::DieWithParent => 3,
        Step::Exec => 4,
        Step::PlaceFd(target) => 16_i32.saturating_add(target),
    }
}

fn decode_step(code: i32) -> Step {
    match code {
        1 => Step::Chdir,
        2 => Step::ProcessGroup,
        3 => Step::DieWithParent,
        16.. => Step::PlaceFd(code - 16),
        _ => Step::Exec,
    }
}

/// The child side of `spawn`: only raw system calls, no allocation, no panics.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the parent's `ChildContext`, alive and unchanged while we run.
    let context = unsafe { &*arg.cast::<ChildContext<'_>>() };
    let fail = |step: Step, errno: c_int| -> c_int {
        context
            .failed_step
            .store(encode_step(step), Ordering::Relaxed);
        context.errno.store(errno.max(1), Ordering::Release);
        // SAFETY: _exit is async-signal-safe and never returns.
        unsafe { libc::_exit(127) }
    };
    reset_signals();
    if !context.cwd.is_null() {
        // SAFETY: `cwd` points to a NUL-terminated path the parent keeps alive.
        if unsafe { libc::chdir(context.cwd) } == -1 {
            return fail(Step::Chdir, errno());
        }
    }
    if let Some(pgroup) = context.pgroup {
        // SAFETY: setpgid on ourselves touches no memory.
        if unsafe { libc::setpgid(0, pgroup) } == -1 {
            return fail(Step::ProcessGroup, errno());
        }
    }
    if let Err((step, errno)) = carry_out(context.plan) {
        return fail(step, errno);
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
        if last == libc::ENOEXEC {
            // SAFETY: slot 1 of `script_argv` is ours to fill (the parent built the
            // array with room for it and does not read it while we run); the result is
            // a NULL-terminated array of strings that live until we exec or exit.
            unsafe {
                *context.script_argv.add(1) = program;
                libc::execve(SHELL.as_ptr(), context.script_argv, context.envp.as_ptr());
            }
            last = errno();
        }
        denied |= last == libc::EACCES;
        // Like execvp: a missing or unusable candidate means try the next directory.
        if !matches!(
            last,
            libc::ENOENT | libc::ENOTDIR | libc::EACCES | libc::ELOOP | libc::ENAMETOOLONG
        ) {
            break;
        }
    }
    fail(
        Step::Exec,
        if denied && last == libc::ENOENT {
            libc::EACCES
        } else {
            last
        },
    )
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

/// Carries out `plan` in the child: the parent-death signal, each move without
/// close-on-exec, and every other descriptor from 3 up marked close-on-exec if asked.
/// Async-signal-safe; returns the step that failed and its errno.
fn carry_out(plan: &FdPlan) -> Result<(), (Step, c_int)> {
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

/// The soft `RLIMIT_NOFILE`: descriptor numbers must stay below it.
pub(crate) fn nofile_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// The highest descriptor number this process may have, for the fallback when
/// `close_range` is missing.
fn max_fd() -> c_int {
    nofile_limit().min(c_int::MAX as u64) as c_int - 1
}

thread_local! {
    /// The plan of the [`spawn_std`] in progress on this thread, for the hook that std
    /// runs in the forked child (a copy of this thread, and of this value).
    static PLAN: Cell<*const FdPlan> = const { Cell::new(ptr::null()) };
}

/// Marks a `Command` that carries our hook already: listed by `Command::get_envs` as a
/// removed variable, which changes nothing in any child's environment.
const HOOKED: &str = "SOCKPAIR_INTERNAL_PLAN_HOOK";

/// Spawns `cmd` through std, which honours every setting it carries (stdio, uid, gid,
/// groups, process group, `pre_exec` closures, ...), and carries out `plan` in the child
/// last, after the `Command`'s own closures.
///
/// The hook is added to a `Command` once, however often it is spawned: it acts only on
/// the plan this call sets for the spawn in progress on this thread, so the same
/// `Command` spawned again (by us, or by `Command::spawn` alone) gets the same child.
pub(crate) fn spawn_std(cmd: &mut Command, plan: &FdPlan) -> io::Result<std::process::Child> {
    if !cmd
        .get_envs()
        .any(|(key, value)| key == HOOKED && value.is_none())
    {
        // SAFETY: the hook is async-signal-safe: a thread-local read and write (a const
        // initialiser and no destructor: no lazy set-up, no allocation), then raw system
        // calls; an OS error value does not allocate.
        unsafe { cmd.pre_exec(plan_hook) };
        cmd.env_remove(HOOKED);
    }
    /// Clears `PLAN` when the spawn is over, however it ends.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            PLAN.set(ptr::null());
        }
    }
    PLAN.set(plan);
    let _clear = Clear;
    cmd.spawn()
}

/// The `pre_exec` hook: carries out the plan set by [`spawn_std`], once.
fn plan_hook() -> io::Result<()> {
    let plan = PLAN.replace(ptr::null());
    if plan.is_null() {
        return Ok(()); // not a spawn of ours, or a second hook after `env_clear`
    }
    // SAFETY: `PLAN` is non-null only while `spawn_std` runs on this thread with `plan`
    // borrowed; std runs this hook in the child it forks from this thread meanwhile,
    // whose memory is a copy of ours at that moment, `plan` included.
    carry_out(unsafe { &*plan }).map_err(|(_, errno)| io::Error::from_raw_os_error(errno))
}
