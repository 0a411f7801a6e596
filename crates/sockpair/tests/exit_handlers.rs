//! A worker whose function calls `exit`: on both paths its status is the join's
//! `Died`, std's stdout and C's streams are flushed, and the exit handlers the function
//! registered run; the handlers the executable registered before `main` reached `init`
//! run in an exec'd worker (a fresh image: they are its own), and not in a forked one
//! (they are the fork server's, inherited; glibc). Which path a worker took is asked of
//! the worker (its parent): without pidfds every worker is exec'd.
//!
//! Its own `main` (`harness = false`), since the handler under test is registered before
//! `init`. The guard: `init` runs first after that, so a worker serves and never
//! reaches the rest of `main`; should that break, a second run of `main` stops at once
//! with status 99, and the whole test ends within a minute (`alarm`).

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use sockpair::worker::{self, Error, Options, Stdio};

/// Set by the test process: its pid (a handler that runs there says nothing).
const PARENT: &str = "SOCKPAIR_TEST_EXIT_HANDLERS_PARENT";

/// Writes `line` to fd 1 with one `write`, as an exit handler may.
fn say(line: &str) {
    // SAFETY: write(2) reads `line.len()` bytes from `line`, which outlives the call.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

/// Registered by the executable before `init`: every process running this file has it.
extern "C" fn image_handler() {
    let parent = std::env::var(PARENT).ok();
    if parent.is_some_and(|pid| pid != std::process::id().to_string()) {
        say("image handler\n");
    }
}

extern "C" fn task_handler() {
    say("task handler\n");
}

/// The worker's parent: this process for an exec'd worker, the fork server for a forked
/// one (every worker is exec'd on a kernel without pidfds).
fn parent_of_worker(_: ()) -> u32 {
    std::os::unix::process::parent_id()
}

/// Registers a handler, leaves text in std's stdout buffer and in C's, then exits.
fn exits(code: i32) {
    // SAFETY: `task_handler` is an `extern "C" fn()` that lives as long as the process.
    unsafe { libc::atexit(task_handler) };
    print!("rust buffered ");
    // SAFETY: a NUL-terminated format without conversions; stdout is a pipe, so C
    // keeps the text in its buffer until a flush.
    unsafe { libc::printf(c"c buffered\n".as_ptr()) };
    std::process::exit(code)
}

fn main() -> ExitCode {
    // SAFETY: `image_handler` is an `extern "C" fn()` that lives as long as the process.
    unsafe { libc::atexit(image_handler) };
    worker::init();
    if std::env::var_os(PARENT).is_some() {
        return ExitCode::from(99); // a worker ran main: stop, do not multiply
    }
    // SAFETY: one thread yet (no worker was spawned, no thread started).
    unsafe { std::env::set_var(PARENT, std::process::id().to_string()) };
    // SAFETY: alarm(2) takes a plain number; SIGALRM's default action ends the process.
    unsafe { libc::alarm(60) };
    let mut failed = false;
    for exec in [false, true] {
        let (mut out, into) = std::io::pipe().unwrap();
        let mut options = Options::new();
        options.exec(exec).stdout(Stdio::from_fd(into));
        let mut probe = options.clone();
        probe.stdout(Stdio::Null); // an exec'd one runs the image's handler as it ends
        let parent = probe.spawn(parent_of_worker, ()).unwrap().join().unwrap();
        let forked = parent != std::process::id();
        let joined = options.spawn(exits, 7).unwrap().join();
        drop(options); // the pipe's last write end here
        let mut said = String::new();
        out.read_to_string(&mut said).unwrap();
        let status = match joined {
            Err(Error::Died(status)) => status,
            other => panic!("exec {exec}: {other:?}"),
        };
        let image = !forked || !cfg!(target_env = "gnu");
        let expected = match image {
            true => "rust buffered task handler\nimage handler\nc buffered\n",
            false => "rust buffered task handler\nc buffered\n",
        };
        if status.code() != Some(7) || status.signal().is_some() || said != expected {
            eprintln!(
                "exit_handlers: exec {exec} (forked: {forked}): {status}, said {said:?}, not \
                 {expected:?}"
            );
            failed = true;
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!("exit_handlers: a worker that exits flushes, runs its own handlers: ok");
    ExitCode::SUCCESS
}
