//! The direct path: `clone(CLONE_VM | CLONE_VFORK)` on a stack of our own, then
//! `execve`, as `posix_spawn` does.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicI32, Ordering};

use super::plan::carry_out;
use super::{Failed, FdPlan, PID_DIGITS, Step, errno};

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
    /// `CLONE_FS`: the child shares our working directory, root and umask (then it must
    /// have no `cwd` of its own).
    pub share_fs: bool,
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

/// The child's stack, above its guard page.
const STACK_SIZE: usize = 64 * 1024;

/// The child's stack: an anonymous mapping whose lowest page is a guard (no access),
/// so that a child that ran past its stack would fault instead of writing into the
/// parent's heap. Unmapped on drop.
struct Stack {
    base: *mut c_void,
    len: usize,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: sysconf only reads a system value.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = STACK_SIZE + page;
        // SAFETY: a new private anonymous mapping at an address the kernel chooses
        // touches no existing memory.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack { base, len };
        // SAFETY: the lowest page of the mapping just made, which nothing uses yet.
        super::super::cvt(unsafe { libc::mprotect(base, page, libc::PROT_NONE) })?;
        Ok(stack)
    }

    /// The highest 16-byte-aligned address: the stack grows down from there.
    fn top(&self) -> *mut c_void {
        ((self.base as usize + self.len) & !15) as *mut c_void
    }
}

thread_local! {
    /// The stack of this thread's spawns, kept between them (unmapped when the thread
    /// ends): a spawn costs no `mmap` after the first.
    static STACK: Cell<Option<Stack>> = const { Cell::new(None) };
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by nothing once the child has exec'd
        // or exited (CLONE_VFORK waits for that before `spawn` goes on).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

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
    // This thread's stack from an earlier spawn, or a new one: the child is done with it
    // once `clone` returns (CLONE_VFORK), so it is put back for the next spawn.
    let stack = match STACK.take() {
        Some(stack) => stack,
        None => Stack::new().map_err(|error| Failed {
            step: Step::Clone,
            error,
        })?,
    };

    let mut all: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    let mut old: MaybeUninit<libc::sigset_t> = MaybeUninit::uninit();
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads it and fills `old`.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
    }
    let share_fs = if exec.share_fs { libc::CLONE_FS } else { 0 };
    // SAFETY: `child_main` is async-signal-safe and reads only `context` (through a
    // shared reference; it writes only through the atomics and the raw pointers into
    // `envp` and `script_argv`, buffers nothing else touches meanwhile), which lives
    // until after the clone returns; CLONE_VFORK suspends this thread until the child
    // has exec'd or exited, so the child's use of `context` and `stack` is over by then.
    // With CLONE_FS the child shares our directory and umask, which it leaves alone: it
    // has no `cwd` to enter (the caller checks).
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | share_fs | libc::SIGCHLD,
            (&raw const context).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: `old` was filled by the pthread_sigmask call above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), ptr::null_mut()) };
    STACK.set(Some(stack));
    if pid == -1 {
        return Err(Failed {
            step: Step::Clone,
            error: clone_error,
        });
    }
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

/// Writes the calling process's pid in decimal at `slot` followed by a NUL.
///
/// # Safety
///
/// `slot` must point to `room` writable bytes followed by one more.
unsafe fn write_pid(slot: *mut u8, room: usize) {
    // SAFETY: getpid has no preconditions (glibc does not cache it).
    let mut pid = unsafe { libc::getpid() } as u32;
    let mut digits = [0u8; PID_DIGITS];
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
