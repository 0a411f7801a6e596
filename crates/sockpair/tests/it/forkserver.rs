//! The worker fork server: a threaded parent, what each worker sees, the server's death,
//! and its one thread. Workers here are copies of this test binary (see `main.rs`).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockpair::worker::{self, Error, Options, Stdio};

use crate::util::{fork_server_here, in_fresh_process, watchdog};

fn double(x: i64) -> i64 {
    x * 2
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The worker's parent: the fork server, for a forked worker.
fn parent(_: ()) -> u32 {
    std::os::unix::process::parent_id()
}

/// How many threads process `pid` has.
fn threads_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(Iterator::count)
        .unwrap_or(0)
}

#[test]
fn a_threaded_parent_spawns_1000_workers_through_the_server() {
    watchdog(|| {
        let stop = Arc::new(AtomicBool::new(false));
        // Eight threads busy in malloc and free, and one holding a lock throughout: a
        // fork of this process would inherit both held.
        let mut busy = Vec::new();
        for seed in 0..8usize {
            let stop = Arc::clone(&stop);
            busy.push(std::thread::spawn(move || {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                let mut n = seed;
                let mut round = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
                    kept.push(vec![n as u8; 16 + n % 4096]);
                    if kept.len() > 64 {
                        kept.swap_remove(n % kept.len());
                    }
                    // Busy, but leaving the two CPUs some time for the tests that run
                    // beside this one.
                    round = round.wrapping_add(1);
                    if round.is_multiple_of(1000) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }));
        }
        let lock = Arc::new(Mutex::new(()));
        let held = {
            let (lock, stop) = (Arc::clone(&lock), Arc::clone(&stop));
            std::thread::spawn(move || {
                let _guard = lock.lock().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let server = worker::spawn(parent, ()).unwrap().join().unwrap();
        if fork_server_here() {
            assert_ne!(
                server,
                std::process::id(),
                "forked by the server, not by us"
            );
        } else {
            // No pidfds: every worker is exec'd, a child of ours; still right.
            assert_eq!(server, std::process::id());
        }
        // Without a fork server (no pidfds) each spawn is an exec: fewer of them.
        let spawns = if fork_server_here() { 1000 } else { 100 };
        for x in 0..spawns {
            let handle = worker::spawn(double, x).unwrap();
            assert_eq!(handle.join().unwrap(), 2 * x);
            if x % 100 == 0 && fork_server_here() {
                assert_eq!(threads_of(server), 1, "the fork server has one thread");
            }
        }
        assert_eq!(
            worker::spawn(parent, ()).unwrap().join().unwrap(),
            server,
            "one server served them all"
        );
        stop.store(true, Ordering::Relaxed);
        for thread in busy {
            thread.join().unwrap();
        }
        held.join().unwrap();
    });
}

/// What a worker sees: a variable, its working directory, its stdin read to the end;
/// it writes a line on stdout and on stderr.
fn surroundings(name: String) -> (Option<String>, String, String) {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    println!("out {name}");
    eprintln!("err {name}");
    let dir = std::env::current_dir().unwrap().display().to_string();
    (std::env::var(&name).ok(), dir, input)
}

#[test]
fn options_set_the_environment_directory_and_stdio_on_both_paths() {
    watchdog(|| {
        let dir = std::env::temp_dir().canonicalize().unwrap();
        for exec in [false, true] {
            let (stdin_read, mut stdin_write) = std::io::pipe().unwrap();
            let (mut out_read, out_write) = std::io::pipe().unwrap();
            let (mut err_read, err_write) = std::io::pipe().unwrap();
            let mut options = Options::new();
            options
                .exec(exec)
                .env("SOCKPAIR_TEST_GREETING", "hello")
                .current_dir(&dir)
                .stdin(Stdio::from_fd(stdin_read))
                .stdout(Stdio::from_fd(out_write))
                .stderr(Stdio::from_fd(err_write));
            stdin_write.write_all(b"input").unwrap();
            drop(stdin_write);
            let handle = options
                .spawn(surroundings, "SOCKPAIR_TEST_GREETING".to_owned())
                .unwrap();
            let (value, cwd, input) = handle.join().unwrap();
            assert_eq!(value.as_deref(), Some("hello"), "exec {exec}");
            assert_eq!(cwd, dir.display().to_string(), "exec {exec}");
            assert_eq!(input, "input", "exec {exec}");
            drop(options); // the last copies of the write ends
            let mut out = String::new();
            out_read.read_to_string(&mut out).unwrap();
            assert_eq!(out, "out SOCKPAIR_TEST_GREETING\n", "exec {exec}");
            let mut err = String::new();
            err_read.read_to_string(&mut err).unwrap();
            assert_eq!(err, "err SOCKPAIR_TEST_GREETING\n", "exec {exec}");

            // Cleared, and null stdio: nothing to read, nothing seen.
            let mut options = Options::new();
            options
                .exec(exec)
                .env_clear()
                .env("ONLY", "this")
                .stdin(Stdio::Null)
                .stdout(Stdio::Null)
                .stderr(Stdio::Null);
            let (value, _, input) = options
                .spawn(surroundings, "PATH".to_owned())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!((value, input), (None, String::new()), "exec {exec}");
            let (only, _, _) = options
                .spawn(surroundings, "ONLY".to_owned())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(only.as_deref(), Some("this"), "exec {exec}");
        }
    });
}

/// The environment and directory this process has at each spawn, not at the first.
#[test]
fn changes_after_the_first_spawn_are_seen_by_the_next_worker() {
    in_fresh_process("forkserver::changes_after_the_first_spawn_inner");
}

#[test]
#[ignore = "run alone in a fresh process by changes_after_the_first_spawn_are_seen_by_the_next_worker"]
fn changes_after_the_first_spawn_inner() {
    let stdin = || Options::new().stdin(Stdio::Null).clone();
    let name = "SOCKPAIR_TEST_CHANGED".to_owned();
    let (before, first_dir, _) = stdin()
        .spawn(surroundings, name.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(before, None);
    // SAFETY: this process runs this one test; no other thread reads the environment.
    unsafe { std::env::set_var(&name, "later") };
    let dir = std::env::temp_dir().canonicalize().unwrap();
    assert_ne!(first_dir, dir.display().to_string());
    std::env::set_current_dir(&dir).unwrap();
    let (after, later_dir, _) = stdin()
        .spawn(surroundings, name.clone())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(after.as_deref(), Some("later"));
    assert_eq!(later_dir, dir.display().to_string());
    // SAFETY: as above.
    unsafe { std::env::remove_var(&name) };
    let (removed, _, _) = stdin().spawn(surroundings, name).unwrap().join().unwrap();
    assert_eq!(removed, None);

    // The umask too, on both paths: read by the worker from its own status. This
    // process reads its own one way with one thread and another with more: both.
    for extra_thread in [false, true] {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let waiting = extra_thread.then(|| std::thread::spawn(move || stopped.recv()));
        for exec in [false, true] {
            for mask in [0o027, 0o077, 0o022] {
                // SAFETY: umask(2) cannot fail; this process runs this one test.
                unsafe { libc::umask(mask) };
                let seen = stdin()
                    .exec(exec)
                    .spawn(umask_of_worker, ())
                    .unwrap()
                    .join();
                assert_eq!(
                    seen.unwrap(),
                    mask,
                    "exec {exec}, extra thread {extra_thread}"
                );
                // SAFETY: as above.
                assert_eq!(unsafe { libc::umask(mask) }, mask, "left as it was");
            }
        }
        drop(stop);
        if let Some(waiting) = waiting {
            let _ = waiting.join();
        }
    }
}

/// The worker's umask, from `/proc/self/status`.
fn umask_of_worker(_: ()) -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|line| line.strip_prefix("Umask:"));
    u32::from_str_radix(line.unwrap().trim(), 8).unwrap()
}

/// What one spawn's options change is that spawn's: the next, with other options, sees
/// this process's environment and directory again; a directory that cannot be entered
/// fails the spawn (and only it).
#[test]
fn a_spawns_own_settings_do_not_stay_for_the_next() {
    watchdog(|| {
        let here = std::env::current_dir().unwrap().display().to_string();
        let name = "SOCKPAIR_TEST_ONLY_ONCE".to_owned();
        let dir = std::env::temp_dir().canonicalize().unwrap();
        let mut once = Options::new();
        once.stdin(Stdio::Null).env(&name, "set").current_dir(&dir);
        let mut plain = Options::new();
        plain.stdin(Stdio::Null);
        for _ in 0..3 {
            let (value, cwd, _) = once
                .spawn(surroundings, name.clone())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(
                (value.as_deref(), cwd),
                (Some("set"), dir.display().to_string())
            );
            let (value, cwd, _) = plain
                .spawn(surroundings, name.clone())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!((value, &cwd), (None, &here));
            // The fork server shares this process's directory: it never enters another.
            let ours = std::env::current_dir().unwrap().display().to_string();
            assert_eq!(ours, here, "this process's own directory is left as it was");
        }
        // A relative directory is relative to this process's.
        let parent = Path::new(&here).parent().map(Path::to_path_buf);
        if let Some(parent) = parent {
            let mut up = Options::new();
            up.stdin(Stdio::Null).current_dir("..");
            for exec in [false, true] {
                up.exec(exec);
                let (_, cwd, _) = up
                    .spawn(surroundings, name.clone())
                    .unwrap()
                    .join()
                    .unwrap();
                assert_eq!(cwd, parent.display().to_string(), "exec {exec}");
            }
        }
        for exec in [false, true] {
            let mut missing = Options::new();
            missing
                .exec(exec)
                .stdin(Stdio::Null)
                .current_dir("/nonexistent/sockpair-test-dir");
            let err = missing.spawn(double, 1).map(drop).unwrap_err();
            assert!(
                err.to_string().contains("/nonexistent/sockpair-test-dir"),
                "exec {exec}: {err}"
            );
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::NotFound,
                "exec {exec}: {err}"
            );
            // What is no directory says so, as `chdir` would, on both paths.
            let mut file = Options::new();
            file.exec(exec)
                .stdin(Stdio::Null)
                .current_dir("/proc/self/exe");
            let err = file.spawn(double, 1).map(drop).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::NotADirectory,
                "exec {exec}: {err}"
            );
            let (_, cwd, _) = plain
                .spawn(surroundings, name.clone())
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(cwd, here, "exec {exec}");
        }
    });
}

/// What no environment can hold (a name that is empty or holds `=` or NUL, a value or a
/// directory that holds NUL) fails the spawn and the pool with `InvalidInput`, the same
/// on both paths, before anything starts: the fork server, and a worker it runs, live on.
#[test]
fn options_no_environment_can_hold_fail_the_spawn_on_both_paths() {
    watchdog(|| {
        let running = Options::new().spawn(sleep_ms, 1500).unwrap();
        type Set = fn(&mut Options);
        let bad: [(&str, Set); 6] = [
            ("a name with =", |o| {
                o.env("A=B", "x");
            }),
            ("an empty name", |o| {
                o.env("", "x");
            }),
            ("a name with NUL", |o| {
                o.env("K\0Z", "x");
            }),
            ("a value with NUL", |o| {
                o.env("K", "v\0w");
            }),
            ("a removed name with =", |o| {
                o.env_remove("A=B");
            }),
            ("a directory with NUL", |o| {
                o.current_dir("a\0b");
            }),
        ];
        for (what, set) in bad {
            let mut errors = Vec::new();
            for exec in [false, true] {
                let mut options = Options::new();
                options.exec(exec).stdin(Stdio::Null);
                set(&mut options);
                let err = options.spawn(double, 1).map(drop).unwrap_err();
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::InvalidInput,
                    "{what}, exec {exec}: {err}"
                );
                let pooled = options.pool(1).map(drop).unwrap_err();
                assert_eq!(pooled.to_string(), err.to_string(), "{what}, exec {exec}");
                errors.push(err.to_string());
            }
            assert_eq!(errors[0], errors[1], "{what}: the same error on both paths");
        }
        assert_eq!(
            running.join().unwrap(),
            1500,
            "the fork server's worker lived on"
        );
        assert_eq!(
            Options::new().spawn(double, 21).unwrap().join().unwrap(),
            42
        );
    });
}

#[test]
fn the_servers_death_fails_pending_spawns_and_joins_at_once_and_a_new_one_starts() {
    // A server of its own: killing the one the other tests share would fail them.
    in_fresh_process("forkserver::the_servers_death_inner");
}

#[test]
#[ignore = "run alone in a fresh process by the_servers_death_fails_pending_spawns_and_joins_at_once_and_a_new_one_starts"]
fn the_servers_death_inner() {
    if !fork_server_here() {
        return; // no fork server to kill: every worker is exec'd here
    }
    let server = worker::spawn(parent, ()).unwrap().join().unwrap();
    let server_pid = rustix::process::Pid::from_raw(server as i32).unwrap();
    // Ten workers busy for a minute, each joined on a thread of its own.
    let mut pending = Vec::new();
    for _ in 0..10 {
        let handle = worker::spawn(sleep_ms, 60_000).unwrap();
        pending.push(std::thread::spawn(move || {
            let result = handle.join().map(drop);
            (result, Instant::now())
        }));
    }
    // Ten spawns waiting on the server, stopped so that none is answered.
    rustix::process::kill_process(server_pid, rustix::process::Signal::STOP).unwrap();
    for _ in 0..10 {
        pending.push(std::thread::spawn(|| {
            let result = worker::spawn(sleep_ms, 1).map(drop).map_err(Error::Io);
            (result, Instant::now())
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    rustix::process::kill_process(server_pid, rustix::process::Signal::KILL).unwrap();
    for thread in pending {
        let (result, at) = thread.join().unwrap();
        assert!(result.is_err(), "{result:?}");
        let after = at.saturating_duration_since(killed);
        assert!(
            after < Duration::from_secs(1),
            "returned {after:?} after the kill"
        );
    }
    // The next spawn starts a new server.
    assert_eq!(worker::spawn(double, 21).unwrap().join().unwrap(), 42);
    let new_server = worker::spawn(parent, ()).unwrap().join().unwrap();
    assert_ne!(new_server, server);
    assert!(
        !std::path::Path::new(&format!("/proc/{server}")).exists(),
        "the dead server was reaped"
    );
}

#[test]
fn a_forked_child_spawns_through_a_server_of_its_own() {
    watchdog(|| {
        if !fork_server_here() {
            return; // every worker is exec'd here: no server to share
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .env(crate::child_mode::MODE, "worker-fork")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{output:?}");
        let number = |prefix: &str, field: usize| -> u32 {
            let line = text
                .lines()
                .find(|line| line.starts_with(prefix))
                .expect(prefix);
            line.split_whitespace().nth(field).unwrap().parse().unwrap()
        };
        let parent_server = number("parent server", 2);
        assert_eq!(number("child answer", 2), 42);
        assert_ne!(
            number("child answer", 4),
            parent_server,
            "the child's own server"
        );
        assert_eq!(number("parent answer", 2), 8);
        assert_eq!(
            number("parent answer", 4),
            parent_server,
            "the parent's server lives on"
        );
    });
}
