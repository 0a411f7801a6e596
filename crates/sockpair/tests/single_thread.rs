//! Workers spawned from a parent that has one thread (a plain `main`, no test harness,
//! whose tests each run on a thread of their own): every worker sees the umask of the
//! moment it was spawned (the fork server shares this process's, `CLONE_FS`; an exec'd
//! worker inherits it), and the parent's is left as it was; with the parent's standard
//! input closed, a worker's is `/dev/null` (from the fork server, or where there is
//! none, from std's start-up in the exec'd worker).
//!
//! Its own `main` (`harness = false`). The guard: `init` runs first, so a worker serves
//! and never reaches the rest of `main`; should that break, a second run of `main` stops
//! at once with status 99, and the whole test ends within a minute (`alarm`).

use std::process::ExitCode;

use sockpair::worker::{self, Options, Stdio};

/// The worker's umask, from `/proc/self/status`.
fn umask_of_worker(_: ()) -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|line| line.strip_prefix("Umask:"));
    u32::from_str_radix(line.unwrap().trim(), 8).unwrap()
}

/// Whether the worker's standard input is `/dev/null` (the same device and inode).
fn stdin_is_dev_null(_: ()) -> bool {
    use std::os::unix::fs::MetadataExt;
    let null = std::fs::metadata("/dev/null").unwrap();
    let stdin = std::fs::metadata("/proc/self/fd/0").unwrap();
    (stdin.dev(), stdin.ino(), stdin.rdev()) == (null.dev(), null.ino(), null.rdev())
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn main() -> ExitCode {
    worker::init();
    if std::env::var_os("SOCKPAIR_TEST_SINGLE_THREAD_RAN").is_some() {
        return ExitCode::from(99); // a worker ran main: stop, do not multiply
    }
    // SAFETY: one thread (checked below, before anything else runs).
    unsafe { std::env::set_var("SOCKPAIR_TEST_SINGLE_THREAD_RAN", "1") };
    // SAFETY: alarm(2) takes a plain number; SIGALRM's default action ends the process.
    unsafe { libc::alarm(60) };
    if threads() != 1 {
        eprintln!("single_thread: {} threads, not 1", threads());
        return ExitCode::FAILURE;
    }
    let mut spawns = 0;
    for exec in [false, true] {
        let mut options = Options::new();
        options.exec(exec).stdin(Stdio::Null);
        for mask in [0o027, 0o077, 0o002, 0o022] {
            // SAFETY: umask(2) cannot fail, and this process has one thread.
            unsafe { libc::umask(mask) };
            let seen = options.spawn(umask_of_worker, ()).unwrap().join().unwrap();
            // SAFETY: as above.
            let left = unsafe { libc::umask(mask) };
            if seen != mask || left != mask || threads() != 1 {
                eprintln!(
                    "single_thread: exec {exec}: umask {mask:o}, the worker saw {seen:o}, \
                     the parent was left with {left:o}, {} threads",
                    threads()
                );
                return ExitCode::FAILURE;
            }
            spawns += 1;
        }
    }
    println!("single_thread: {spawns} workers saw the umask of their spawn: ok");
    // Our standard input closed: a worker that inherits it gets `/dev/null`, not
    // whatever took its number since (the spawn's own pair would).
    // SAFETY: nothing of this process uses fd 0 (std's `Stdin` is never read here).
    unsafe { libc::close(0) };
    let null = Options::new()
        .spawn(stdin_is_dev_null, ())
        .unwrap()
        .join()
        .unwrap();
    if !null {
        eprintln!("single_thread: with stdin closed, a worker's stdin is not /dev/null");
        return ExitCode::FAILURE;
    }
    println!("single_thread: with stdin closed, a worker's stdin is /dev/null: ok");
    ExitCode::SUCCESS
}
