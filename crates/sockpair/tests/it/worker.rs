//! `sockpair::worker`: functions run in re-executed copies of this test binary (see
//! `init_before_main!` in main.rs), against real processes and their real deaths.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sockpair::worker::{self, Error, Pool};

use crate::util::watchdog;

fn double(x: i64) -> i64 {
    x * 2
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn my_pid(_: ()) -> u32 {
    std::process::id()
}

/// Whether `pid` is gone: no process and no zombie.
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits up to `limit` for `pid` to be gone (or be a zombie of a parent that is gone:
/// reaped by whoever adopted it, which may be slow or never in a container).
fn ends_within(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        match state {
            None => return true,
            Some(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z') =>
            {
                return true;
            }
            Some(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    false
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Big {
    name: String,
    data: Vec<u8>,
    nested: Vec<(u32, Option<String>)>,
}

fn reverse(mut big: Big) -> Big {
    big.data.reverse();
    big.name = big.name.to_uppercase();
    big
}

#[test]
fn spawn_returns_the_result_and_leaves_no_process() {
    watchdog(|| {
        let handle = worker::spawn(double, 21).unwrap();
        let pid = handle.pid().unwrap();
        assert_ne!(pid, std::process::id());
        assert_eq!(handle.join().unwrap(), 42);
        assert!(gone(pid), "worker {pid} left behind after join");
        // A non-capturing closure, and a worker that is really another process.
        let closure = worker::spawn(|s: String| format!("{s}!"), "hi".to_owned()).unwrap();
        assert_eq!(closure.join().unwrap(), "hi!");
        let handle = worker::spawn(my_pid, ()).unwrap();
        let pid = handle.pid().unwrap();
        assert_eq!(handle.join().unwrap(), pid);
    });
}

#[test]
fn large_arguments_and_results_travel_whole() {
    watchdog(|| {
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
        let big = Big {
            name: "ünïcode".into(),
            data: data.clone(),
            nested: vec![(1, None), (2, Some("two".into()))],
        };
        let back = worker::spawn(reverse, big).unwrap().join().unwrap();
        let mut expected = data;
        expected.reverse();
        assert_eq!(back.data, expected);
        assert_eq!(back.name, "ÜNÏCODE");
        assert_eq!(back.nested, [(1, None), (2, Some("two".into()))]);
    });
}

#[test]
fn a_panic_comes_back_with_its_message_and_location() {
    watchdog(|| {
        let handle = worker::spawn(|n: u32| -> u32 { panic!("refusing {n}") }, 7).unwrap();
        let pid = handle.pid().unwrap();
        match handle.join() {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "refusing 7");
                assert!(location.unwrap().contains("worker.rs"));
            }
            other => panic!("{other:?}"),
        }
        assert!(gone(pid));
        let text = worker::spawn(|_: ()| -> () { std::panic::panic_any("static") }, ())
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(
            text.to_string().split(" (at ").next().unwrap(),
            "the worker panicked: static"
        );
        // A panic on another thread that the function handles is not the function's.
        let handled = worker::spawn(
            |_: ()| -> u8 {
                let helper = std::thread::spawn(|| panic!("helper"));
                assert!(helper.join().is_err());
                5
            },
            (),
        );
        assert_eq!(handled.unwrap().join().unwrap(), 5);
    });
}

/// A function that takes the worker's end away (puts `/dev/null` at fd 3) leaves it
/// unable to answer: the worker says so on stderr and exits 2, on both paths (a forked
/// one used to exit 0, as if its parent had hung up), in a pool too, whose next task
/// gets a new worker.
#[test]
fn a_worker_whose_function_takes_its_end_away_exits_2_on_both_paths() {
    fn take_the_end_away(_: ()) -> u32 {
        use std::os::fd::AsRawFd;
        let null = std::fs::File::open("/dev/null").unwrap();
        // SAFETY: `dup2` onto fd 3 closes the worker's end and puts a copy of `null`
        // there, open as before: no owner of fd 3 sees it closed.
        assert_eq!(unsafe { libc::dup2(null.as_raw_fd(), 3) }, 3);
        5
    }
    watchdog(|| {
        for exec in [false, true] {
            let mut options = worker::Options::new();
            options.exec(exec).stderr(worker::Stdio::Null);
            match options.spawn(take_the_end_away, ()).unwrap().join() {
                Err(Error::Died(status)) => {
                    assert_eq!(status.code(), Some(2), "exec {exec}: {status:?}")
                }
                other => panic!("exec {exec}: {other:?}"),
            }
            let pool = options.pool(1).unwrap();
            match pool.spawn(take_the_end_away, ()).join() {
                Err(Error::Died(status)) => {
                    assert_eq!(status.code(), Some(2), "exec {exec}: {status:?}")
                }
                other => panic!("exec {exec}, pool: {other:?}"),
            }
            assert_eq!(pool.spawn(double, 21).join().unwrap(), 42, "exec {exec}");
        }
    });
}

#[test]
fn a_death_before_answering_is_named() {
    watchdog(|| {
        let exited = worker::spawn(|code: i32| -> () { std::process::exit(code) }, 3).unwrap();
        match exited.join() {
            Err(Error::Died(status)) => assert_eq!(status.code(), Some(3)),
            other => panic!("{other:?}"),
        }
        let aborted = worker::spawn(|_: ()| -> () { std::process::abort() }, ()).unwrap();
        let err = aborted.join().unwrap_err();
        match &err {
            Error::Died(status) => assert_eq!(status.signal(), Some(libc::SIGABRT)),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("SIGABRT"), "{err}");
        let killed = worker::spawn(
            |_: ()| -> () {
                rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::SEGV,
                )
                .unwrap();
            },
            (),
        )
        .unwrap();
        match killed.join() {
            Err(Error::Died(status)) => assert_eq!(status.signal(), Some(libc::SIGSEGV)),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn join_timeout_leaves_the_worker_running_until_kill() {
    watchdog(|| {
        let mut handle = worker::spawn(sleep_ms, 20_000).unwrap();
        let pid = handle.pid().unwrap();
        let started = Instant::now();
        match handle.join_timeout(Duration::from_millis(150)) {
            Err(Error::Timeout(after)) => assert_eq!(after, Duration::from_millis(150)),
            other => panic!("{other:?}"),
        }
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(5));
        assert!(!gone(pid), "the worker must still run after a timeout");
        assert!(matches!(
            handle.join_timeout(Duration::ZERO),
            Err(Error::Timeout(_))
        ));
        handle.kill().unwrap();
        match handle.join_timeout(Duration::MAX) {
            Err(Error::Died(status)) => assert_eq!(status.signal(), Some(libc::SIGKILL)),
            other => panic!("{other:?}"),
        }
        assert!(gone(pid));
        // Taken: later calls say so rather than wait.
        assert!(matches!(
            handle.join_timeout(Duration::MAX),
            Err(Error::Io(_))
        ));
        // A timeout long enough sees the result.
        let mut quick = worker::spawn(sleep_ms, 10).unwrap();
        assert_eq!(quick.join_timeout(Duration::MAX).unwrap(), 10);
        let mut later = worker::spawn(sleep_ms, 300).unwrap();
        assert!(matches!(
            later.join_timeout(Duration::from_millis(10)),
            Err(Error::Timeout(_))
        ));
        assert_eq!(later.join_timeout(Duration::from_secs(20)).unwrap(), 300);
    });
}

#[test]
fn dropping_a_handle_ends_its_worker() {
    watchdog(|| {
        let handle = worker::spawn(sleep_ms, 30_000).unwrap();
        let pid = handle.pid().unwrap();
        assert!(!gone(pid));
        let started = Instant::now();
        drop(handle);
        assert!(gone(pid), "killed and reaped on drop");
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

/// Serializes as a number, deserializes as a string: never survives the round trip.
#[derive(Debug)]
struct Lopsided;

impl Serialize for Lopsided {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(200)
    }
}

impl<'de> Deserialize<'de> for Lopsided {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        bool::deserialize(d).map(|_| Lopsided)
    }
}

/// Refuses to serialize.
#[derive(Debug, Deserialize)]
struct Unsendable;

impl Serialize for Unsendable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
}

#[test]
fn values_that_do_not_survive_serde_are_errors() {
    watchdog(|| {
        let result = worker::spawn(|_: ()| Lopsided, ()).unwrap().join();
        assert!(matches!(result, Err(Error::Decode(why)) if why.contains("result")),);
        let argument = worker::spawn(|_: Lopsided| 1u8, Lopsided).unwrap().join();
        assert!(matches!(argument, Err(Error::Decode(why)) if why.contains("argument")));
        let encode = worker::spawn(|_: ()| Unsendable, ()).unwrap().join();
        assert!(matches!(encode, Err(Error::Decode(why)) if why.contains("encode")));
        let refused = worker::spawn(|_: Unsendable| 1u8, Unsendable).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
    });
}

/// The worker's open descriptors above 2, and what fd 3 is.
fn descriptors(_: ()) -> (Vec<i32>, String) {
    let open = (3..1024)
        .filter(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok())
        .collect();
    let three = std::fs::read_link("/proc/self/fd/3").unwrap();
    (open, three.to_string_lossy().into_owned())
}

#[test]
fn the_worker_inherits_no_descriptor_but_its_end() {
    watchdog(|| {
        // An inheritable descriptor of ours (no close-on-exec), as a careless library
        // would leave one.
        let (read, write) = std::io::pipe().unwrap();
        rustix::io::fcntl_setfd(&write, rustix::io::FdFlags::empty()).unwrap();
        let (open, three) = worker::spawn(descriptors, ()).unwrap().join().unwrap();
        assert_eq!(open, [3], "only the end at fd 3");
        assert!(three.starts_with("socket:"), "{three}");
        drop((read, write));
    });
}

#[test]
fn spawning_from_many_threads_at_once_works() {
    watchdog(|| {
        let threads: Vec<_> = (0..8i64)
            .map(|t| {
                std::thread::spawn(move || {
                    (0..4i64)
                        .map(|i| worker::spawn(double, t * 100 + i).unwrap())
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|h| h.join().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for (t, thread) in threads.into_iter().enumerate() {
            let t = t as i64;
            assert_eq!(
                thread.join().unwrap(),
                (0..4).map(|i| 2 * (t * 100 + i)).collect::<Vec<_>>()
            );
        }
    });
}

/// What the worker's own children see: it re-runs this test binary (`--list`), which
/// inherits `SOCKPAIR_WORKER` but must not take itself for a worker.
fn run_self_listing(_: ()) -> (bool, bool, bool) {
    let own = std::env::var("SOCKPAIR_WORKER").ok() == Some(std::process::id().to_string());
    let output = Command::new("/proc/self/exe")
        .arg("--list")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout).contains("worker::");
    (own, output.status.success(), listed)
}

#[test]
fn a_descendant_that_inherits_the_variable_is_not_a_worker() {
    watchdog(|| {
        // An exec'd worker is recognised by the variable holding its own pid; a forked
        // one needs no variable (it sees this process's environment).
        for exec in [true, false] {
            let handle = worker::Options::new()
                .exec(exec)
                .spawn(run_self_listing, ())
                .unwrap();
            let (own, success, listed) = handle.join().unwrap();
            let exec_here = exec || !crate::util::fork_server_here();
            assert_eq!(
                own, exec_here,
                "the worker's variable holds its own pid (exec {exec})"
            );
            assert!(
                success && listed,
                "the grandchild ran as the test binary it is"
            );
        }
    });
}

/// Forks a child that keeps a copy of the worker's end and lives on, then exits: EOF
/// never comes while the copy lives, and the parent must still see the death at once.
fn exit_leaving_a_copy_of_the_end(code: i32) -> () {
    // SAFETY: the worker runs this on its only thread, and the child below only sleeps
    // and exits.
    match unsafe { libc::fork() } {
        0 => {
            // SAFETY: async-signal-safe calls only.
            unsafe {
                libc::sleep(20);
                libc::_exit(0);
            }
        }
        _ => std::process::exit(code),
    }
}

#[test]
fn a_copy_of_the_end_in_a_grandchild_does_not_hide_the_death() {
    watchdog(|| {
        let started = Instant::now();
        match worker::spawn(exit_leaving_a_copy_of_the_end, 9)
            .unwrap()
            .join()
        {
            Err(Error::Died(status)) => assert_eq!(status.code(), Some(9)),
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn the_worker_ends_when_its_parent_dies() {
    watchdog(|| {
        let exe = std::env::current_exe().unwrap();
        let mut middle = Command::new(exe)
            .env(crate::child_mode::MODE, "worker-parent")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Two workers (forked by the fork server, and exec'd) say "pid parent".
        let mut lines = BufReader::new(middle.stdout.take().unwrap()).lines();
        let mut processes = BTreeSet::new();
        for _ in 0..2 {
            let line = lines.next().unwrap().unwrap();
            let (pid, parent) = line.split_once(' ').expect("pid parent");
            processes.insert(pid.parse::<u32>().unwrap());
            processes.insert(parent.parse::<u32>().unwrap());
        }
        processes.remove(&middle.id());
        let expected = if crate::util::fork_server_here() {
            3
        } else {
            2
        };
        assert_eq!(
            processes.len(),
            expected,
            "two workers (and the fork server): {processes:?}"
        );
        assert!(processes.iter().all(|&pid| !gone(pid)));
        middle.kill().unwrap();
        middle.wait().unwrap();
        for pid in processes {
            assert!(
                ends_within(pid, Duration::from_secs(2)),
                "{pid} (a worker or the fork server) outlived its parent by 2 s"
            );
        }
    });
}

#[test]
fn pool_map_is_in_order_and_spawn_reuses_workers() {
    watchdog(|| {
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.size(), 2);
        let doubled: Vec<i64> = pool.map(double, 0..100).map(Result::unwrap).collect();
        assert_eq!(doubled, (0..100).map(|x| x * 2).collect::<Vec<_>>());
        let pids: BTreeSet<u32> = (0..20)
            .map(|_| pool.spawn(my_pid, ()))
            .map(|h| h.join().unwrap())
            .collect();
        assert!(
            pids.len() <= 2 && !pids.is_empty(),
            "{pids:?}: two workers, reused"
        );
        assert!(!pids.contains(&std::process::id()));
        // Sleeping tasks run two at a time.
        let started = Instant::now();
        let slept: Vec<u64> = pool
            .map(sleep_ms, [300, 300, 300, 300])
            .map(Result::unwrap)
            .collect();
        assert_eq!(slept, [300; 4]);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_millis(1150),
            "{took:?}"
        );
        assert_eq!(
            Pool::new(0).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
    });
}

/// Task 3 ends its worker by the means given; the others answer.
fn die_on_three((i, how): (u32, u8)) -> u32 {
    if i == 3 {
        match how {
            0 => std::process::exit(7),
            1 => std::process::abort(),
            _ => panic!("three"),
        }
    }
    i
}

#[test]
fn a_dead_pool_worker_fails_only_its_task_and_is_replaced() {
    watchdog(|| {
        let pool = Pool::new(2).unwrap();
        for how in 0..3u8 {
            let results: Vec<_> = pool.map(die_on_three, (0..10).map(|i| (i, how))).collect();
            for (i, result) in results.iter().enumerate() {
                match (i, result) {
                    (3, Err(Error::Died(status))) if how == 0 => assert_eq!(status.code(), Some(7)),
                    (3, Err(Error::Died(status))) if how == 1 => {
                        assert_eq!(status.signal(), Some(libc::SIGABRT))
                    }
                    (3, Err(Error::Panicked { message, .. })) if how == 2 => {
                        assert_eq!(message, "three")
                    }
                    (i, Ok(value)) if i != 3 => assert_eq!(*value, i as u32),
                    other => panic!("how {how}: {other:?}"),
                }
            }
        }
        // Still two workers, answering.
        let pids: BTreeSet<u32> = (0..10)
            .map(|_| pool.spawn(my_pid, ()))
            .map(|h| h.join().unwrap())
            .collect();
        assert!(!pids.is_empty() && pids.len() <= 2);
    });
}

#[test]
fn pool_tasks_time_out_and_are_killed_or_cancelled() {
    watchdog(|| {
        let pool = Pool::new(1).unwrap();
        let mut running = pool.spawn(sleep_ms, 20_000);
        let mut queued = pool.spawn(sleep_ms, 1);
        assert!(matches!(
            running.join_timeout(Duration::from_millis(100)),
            Err(Error::Timeout(_))
        ));
        let pid = running.pid().expect("a running task has its worker's pid");
        assert_eq!(queued.pid(), None, "a queued task has no worker yet");
        queued.kill().unwrap();
        assert!(matches!(
            queued.join_timeout(Duration::MAX),
            Err(Error::Killed)
        ));
        running.kill().unwrap();
        match running.join() {
            Err(Error::Died(status)) => assert_eq!(status.signal(), Some(libc::SIGKILL)),
            other => panic!("{other:?}"),
        }
        assert!(ends_within(pid, Duration::from_secs(5)));
        // Replaced: the next task runs on a new worker.
        let next = pool.spawn(my_pid, ()).join().unwrap();
        assert_ne!(next, pid);
    });
}

fn exit_now(code: i32) {
    std::process::exit(code)
}

/// A task that goes to a new worker (its last one died) travels with the worker's start:
/// a kill at any moment of that start still ends it, and a dropped handle's task runs
/// on (its answer is dropped), whichever moment it lands in.
#[test]
fn a_task_killed_while_its_new_worker_starts_is_killed() {
    watchdog(|| {
        let pool = Pool::new(1).unwrap();
        for round in 0..20u64 {
            assert!(pool.spawn(exit_now, 3).join().is_err());
            let mut task = pool.spawn(sleep_ms, 60_000);
            // From no wait at all to well after the worker started.
            std::thread::sleep(Duration::from_micros(round * round * 20));
            task.kill().unwrap();
            let started = Instant::now();
            match task.join() {
                Err(Error::Killed) => {}
                Err(Error::Died(status)) => assert_eq!(status.signal(), Some(libc::SIGKILL)),
                other => panic!("round {round}: {other:?}"),
            }
            assert!(started.elapsed() < Duration::from_secs(5), "round {round}");
            // Dropped as it starts: the pool goes on.
            assert!(pool.spawn(exit_now, 3).join().is_err());
            drop(pool.spawn(double, 1));
            assert_eq!(pool.spawn(double, 21).join().unwrap(), 42, "round {round}");
        }
    });
}

#[test]
fn dropping_a_pool_ends_its_workers() {
    watchdog(|| {
        // Two busy workers, two tasks waiting for them.
        let pool = Pool::new(2).unwrap();
        let busy = [pool.spawn(sleep_ms, 30_000), pool.spawn(sleep_ms, 30_000)];
        let queued = [pool.spawn(sleep_ms, 1), pool.spawn(sleep_ms, 1)];
        let started = Instant::now();
        while busy.iter().any(|task| task.pid().is_none()) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tasks never started"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let pids: Vec<u32> = busy.iter().map(|task| task.pid().unwrap()).collect();
        let started = Instant::now();
        drop(pool);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            pids.iter().all(|&pid| gone(pid)),
            "busy workers killed and reaped"
        );
        for task in busy {
            assert!(
                matches!(task.join(), Err(Error::Died(status)) if status.signal() == Some(libc::SIGKILL))
            );
        }
        for task in queued {
            assert!(matches!(task.join(), Err(Error::Killed)));
        }
        // An idle worker is ended too.
        let pool = Pool::new(1).unwrap();
        let idle = pool.spawn(my_pid, ()).join().unwrap();
        assert!(!gone(idle));
        drop(pool);
        assert!(gone(idle), "idle worker reaped");
    });
}

/// A parent that is not this executable (Python) starts this test binary as a worker:
/// it must refuse to call anything, say why, and exit.
const PYTHON_PARENT: &str = r#"
import os, socket, struct, sys
ours, theirs = socket.socketpair()
pid = os.fork()
if pid == 0:
    os.dup2(theirs.fileno(), 3)
    os.environ["SOCKPAIR_WORKER"] = str(os.getpid())
    os.execv(sys.argv[1], [sys.argv[1]])
theirs.close()
# A request with made-up distances: it must never be called.
request = bytes([1, 1]) + struct.pack("<qq", 0x40, 0x80)
ours.sendall(struct.pack(">I", len(request)) + request)
data = b""
while True:
    chunk = ours.recv(65536)
    if not chunk:
        break
    data += chunk
_, status = os.waitpid(pid, 0)
(length,) = struct.unpack(">I", data[:4])
print(os.waitstatus_to_exitcode(status), data[4], data[5:4 + length].decode())
"#;

#[test]
fn a_worker_refuses_a_parent_that_runs_another_executable() {
    watchdog(|| {
        let exe = std::env::current_exe().unwrap();
        let output = Command::new("python3")
            .args(["-c", PYTHON_PARENT])
            .arg(exe)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{out} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (code, rest) = out.trim().split_once(' ').unwrap();
        assert_eq!(code, "2", "the worker exits with 2: {out}");
        let (tag, why) = rest.split_once(' ').unwrap();
        assert_eq!(tag, "3", "a NotFound answer: {out}");
        assert!(why.contains("runs another executable"), "{why}");
    });
}

/// A worker that runs a worker of its own.
fn double_in_a_grandchild(x: i64) -> (u32, i64) {
    let handle = worker::spawn(double, x).unwrap();
    let pid = handle.pid().unwrap();
    (pid, handle.join().unwrap())
}

#[test]
fn a_worker_can_spawn_workers() {
    watchdog(|| {
        let handle = worker::spawn(double_in_a_grandchild, 8).unwrap();
        let child = handle.pid().unwrap();
        let (grandchild, value) = handle.join().unwrap();
        assert_eq!(value, 16);
        assert_ne!(grandchild, child);
        assert!(gone(grandchild));
    });
}

/// A worker's panic comes back in the error; nothing on the shared stderr reads as the
/// parent's own panic (`thread 'main' panicked`), and a panic on another thread of the
/// worker is one line naming the worker.
#[test]
fn a_workers_panic_is_the_workers_not_the_parents() {
    watchdog(|| {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .env(crate::child_mode::MODE, "worker-panics")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stdout.contains("the worker panicked: boom 7"), "{stdout}");
        assert!(stdout.contains("helper panicked: true"), "{stdout}");
        assert!(!stderr.contains("thread 'main'"), "{stderr}");
        assert!(
            !stderr.contains("boom"),
            "the worker's own panic is in the error: {stderr}"
        );
        let helper: Vec<&str> = stderr.lines().filter(|l| l.contains("helper")).collect();
        assert_eq!(helper.len(), 1, "{stderr}");
        assert!(
            helper[0].starts_with("sockpair worker ") && helper[0].contains("panicked at"),
            "{stderr}"
        );
    });
}

/// Writes a stray frame (`[0, 0, 0, 1] "x"`) on the worker's own end, then doubles.
fn stray_then_double(x: i64) -> i64 {
    use std::io::Write;
    use std::os::fd::{BorrowedFd, OwnedFd};
    // SAFETY: fd 3 is this worker's end of its pair, open while it runs; the clone is
    // a new descriptor owned here.
    let end: OwnedFd = unsafe { BorrowedFd::borrow_raw(3) }
        .try_clone_to_owned()
        .unwrap();
    std::fs::File::from(end).write_all(b"\0\0\0\x01x").unwrap();
    x * 2
}

#[test]
fn a_stray_frame_fails_only_its_task_and_its_worker_is_not_reused() {
    watchdog(|| {
        let pool = Pool::new(1).unwrap();
        let before = pool.spawn(my_pid, ()).join().unwrap();
        match pool.spawn(stray_then_double, 5).join() {
            Err(Error::Decode(why)) => assert!(why.contains("out of step"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The next tasks get their own results, from a fresh worker.
        for x in [21, 22, 23] {
            assert_eq!(pool.spawn(double, x).join().unwrap(), 2 * x);
        }
        let after = pool.spawn(my_pid, ()).join().unwrap();
        assert_ne!(before, after, "the out-of-step worker was reused");
        assert!(ends_within(before, Duration::from_secs(5)));
        // A spawned worker out of step: the same error, and no process left.
        let mut handle = worker::spawn(stray_then_double, 5).unwrap();
        let pid = handle.pid().unwrap();
        match handle.join_timeout(Duration::from_secs(20)) {
            Err(Error::Decode(why)) => assert!(why.contains("out of step"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(gone(pid), "the spawned worker was reaped");
    });
}

/// Writes the start of a frame (a header claiming 4 GiB) on the worker's own end, waits
/// `ms`, then returns.
fn stray_header_then(ms: u64) -> u64 {
    use std::io::Write;
    use std::os::fd::{BorrowedFd, OwnedFd};
    // SAFETY: as in `stray_then_double`.
    let end: OwnedFd = unsafe { BorrowedFd::borrow_raw(3) }
        .try_clone_to_owned()
        .unwrap();
    std::fs::File::from(end).write_all(&[0xff; 4]).unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// The start of a frame that the function never finishes swallows the worker's real
/// answer: the task fails as out of step instead of waiting for ever (a pool's worker is
/// probed once the frame stalls, a spawned one ends), the worker is not reused, and the
/// next tasks get their own results; on both paths.
#[test]
fn a_stray_partial_frame_fails_only_its_task_and_never_hangs() {
    watchdog(|| {
        for exec in [false, true] {
            let mut options = worker::Options::new();
            options.exec(exec);
            let pool = options.pool(1).unwrap();
            for ms in [0, 1500] {
                let before = pool.spawn(my_pid, ()).join().unwrap();
                let mut stray = pool.spawn(stray_header_then, ms);
                match stray.join_timeout(Duration::from_secs(20)) {
                    Err(Error::Decode(why)) => assert!(why.contains("out of step"), "{why}"),
                    other => panic!("exec {exec}, {ms} ms: {other:?}"),
                }
                for x in [21, 22] {
                    assert_eq!(pool.spawn(double, x).join().unwrap(), 2 * x);
                }
                let after = pool.spawn(my_pid, ()).join().unwrap();
                assert_ne!(
                    before, after,
                    "exec {exec}: the out-of-step worker was reused"
                );
                assert!(ends_within(before, Duration::from_secs(5)));
            }
            let mut handle = options.spawn(stray_header_then, 0).unwrap();
            let pid = handle.pid().unwrap();
            match handle.join_timeout(Duration::from_secs(20)) {
                Err(Error::Decode(why)) => assert!(why.contains("out of step"), "{why}"),
                other => panic!("exec {exec}, spawned: {other:?}"),
            }
            assert!(gone(pid), "the spawned worker was reaped");
        }
    });
}

#[test]
fn an_idle_worker_killed_from_outside_does_not_fail_the_next_task() {
    watchdog(|| {
        let pool = Pool::new(1).unwrap();
        for round in 0..20 {
            let pid = pool.spawn(my_pid, ()).join().unwrap();
            // Killed while idle, and the next task submitted at once: it never reached
            // that worker, so it runs on a fresh one.
            let killed = rustix::process::Pid::from_raw(pid as i32).unwrap();
            rustix::process::kill_process(killed, rustix::process::Signal::KILL).unwrap();
            assert_eq!(
                pool.spawn(double, round).join().unwrap(),
                2 * round,
                "round {round}"
            );
            assert!(ends_within(pid, Duration::from_secs(5)));
        }
        // Killed while it runs a task: that task reports the death.
        let mut running = pool.spawn(sleep_ms, 10_000);
        let started = Instant::now();
        let pid = loop {
            if let Some(pid) = running.pid() {
                break pid;
            }
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        };
        std::thread::sleep(Duration::from_millis(200)); // it has taken the task
        let killed = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(killed, rustix::process::Signal::KILL).unwrap();
        match running.join_timeout(Duration::from_secs(20)) {
            Err(Error::Died(status)) => assert_eq!(status.signal(), Some(libc::SIGKILL)),
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.spawn(double, 4).join().unwrap(), 8);
    });
}
