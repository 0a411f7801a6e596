//! This test binary re-executed as a child: when `FAULTS_CHILD` names a mode, the mode
//! runs before libtest's `main` and the process exits with its result.

use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use sockpair::{Channel, Program, Socket, SpawnOptions};

/// Names the mode; unset in the test process itself.
pub const MODE: &str = "FAULTS_CHILD";
/// The mode of the grandchild a `middle` child starts.
pub const GRANDCHILD: &str = "FAULTS_GRANDCHILD";
/// Set (to anything) for a `middle` child whose grandchild dies with it.
pub const DIE_WITH_PARENT: &str = "FAULTS_DIE_WITH_PARENT";

/// Bytes per message of the `send-large` mode: 64 MiB.
pub const LARGE: usize = 64 << 20;

sockpair::__run_before_main!(run_child_mode);

fn run_child_mode() {
    let Some(mode) = std::env::var(MODE).ok() else {
        return;
    };
    let outcome = std::panic::catch_unwind(|| match mode.as_str() {
        "send-small" => send_forever(&[7; 64], false),
        "send-large" => send_forever(&vec![9; LARGE], false),
        "send-fds" => send_forever(b"with descriptors", true),
        "sleep" => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        "echo" => echo(),
        "recv-until-eof" => recv_until_eof(),
        "middle" => middle(),
        "list-fds" => println!("{}", listed_fds()),
        "list-fds-to-end" => {
            end().send(listed_fds().as_bytes()).unwrap();
        }
        "emfile" => crate::emfile::run(),
        "signals" => crate::signals::run(),
        "hostile" => crate::hostile::run(),
        other => panic!("unknown child mode {other}"),
    });
    std::process::exit(match outcome {
        Ok(()) => 0,
        Err(_) => 1,
    });
}

/// The end at `$SOCKPAIR_FD`.
fn end() -> Socket {
    // SAFETY: before main, single-threaded; the descriptor is ours alone.
    unsafe { Socket::from_inherited("SOCKPAIR_FD") }.expect("an end at $SOCKPAIR_FD")
}

/// Sends `payload` (with three descriptors each time, if `fds`) until the peer is gone.
fn send_forever(payload: &[u8], fds: bool) {
    let mut channel: Channel<Vec<u8>> = Channel::new(end()).unwrap();
    let (read, write) = std::io::pipe().unwrap();
    let extra = std::fs::File::open("/dev/null").unwrap();
    loop {
        let sent = match fds {
            true => channel.send_with_fds(payload, &[read.as_fd(), write.as_fd(), extra.as_fd()]),
            false => channel.send(payload),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Echoes every message until the end of the stream.
fn echo() {
    let mut channel: Channel<Vec<u8>> = Channel::new(end()).unwrap();
    while let Some(message) = channel.recv().unwrap() {
        channel.send(&message).unwrap();
    }
}

/// Receives until the end of the stream, which must come cleanly (exit 0).
fn recv_until_eof() {
    let mut channel: Channel<Vec<u8>> = Channel::new(end()).unwrap();
    while channel.recv().unwrap().is_some() {}
}

/// Starts a grandchild in mode `$FAULTS_GRANDCHILD` (dying with us if
/// `$FAULTS_DIE_WITH_PARENT` is set), tells our parent its pid over our end, then keeps
/// the grandchild's socket open and sleeps until killed.
fn middle() {
    let to_parent = end();
    let mode = std::env::var(GRANDCHILD).unwrap();
    let (_child, _its_end) = SpawnOptions::new()
        .die_with_parent(std::env::var_os(DIE_WITH_PARENT).is_some())
        .spawn_program(
            Program::new(std::env::current_exe().unwrap())
                .env(MODE, mode)
                .env_remove(GRANDCHILD),
        )
        .unwrap();
    let pid = _child.id().to_string();
    to_parent.send(pid.as_bytes()).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// This process's open descriptors, comma-separated (listed before `end` takes one).
fn listed_fds() -> String {
    let fds: Vec<String> = crate::util::fd_numbers()
        .iter()
        .map(i32::to_string)
        .collect();
    fds.join(",")
}

/// This test binary in `mode`, as a program to spawn.
pub fn program(mode: &str) -> Program {
    let mut program = Program::new(std::env::current_exe().unwrap());
    program.env(MODE, mode);
    program
}

/// Runs the experiment `mode` in a fresh copy of this binary (for one that changes
/// process-wide state: limits, signal handlers, peak memory), re-prints its row, and
/// fails if it failed.
pub fn fresh(mode: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let err = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let out = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    // Each experiment bounds itself; this only turns a hang into a failure.
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(900) {
            child.kill().unwrap();
            panic!("{mode}: still running after 15 minutes");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    for line in out.lines().filter(|line| line.starts_with("fault-row:")) {
        println!("{line}");
    }
    assert!(
        status.success(),
        "{mode} in a fresh process: {status}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
}
