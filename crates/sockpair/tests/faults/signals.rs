//! Signals: a `SIGALRM` handler installed without `SA_RESTART` fires every 2 ms at the
//! thread that blocks. Every blocking call of a `Channel` and `Child` retries and keeps
//! its deadline; a `Socket` call may fail with `Interrupted`, as documented, and nothing
//! else. Runs in a fresh process (the handler is process-wide).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sockpair::{Channel, ErrorKind, Program, SpawnOptions, Type, pair};

use crate::{Row, Scale, children};

#[test]
fn signals() {
    let _serial = crate::serial();
    children::fresh("signals");
}

static FIRED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    FIRED.fetch_add(1, Ordering::Relaxed);
}

/// How far past its deadline a timed call may return.
const SLACK: Duration = Duration::from_millis(250);
const TIMEOUT: Duration = Duration::from_millis(60);

/// The experiment, in the fresh process.
pub fn run() {
    // SAFETY: the handler only adds to an atomic (async-signal-safe); the structs are
    // zeroed then filled as sigaction(2) and setitimer(2) describe, and outlive the calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_alarm as *const () as libc::sighandler_t;
        action.sa_flags = 0; // no SA_RESTART: blocked calls fail with EINTR
        assert_eq!(
            libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()),
            0
        );
        let every = libc::timeval {
            tv_sec: 0,
            tv_usec: 2000,
        };
        let timer = libc::itimerval {
            it_interval: every,
            it_value: every,
        };
        assert_eq!(
            libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()),
            0
        );
    }
    let mut row = Row::new("signals (SIGALRM every 2 ms, no SA_RESTART)");
    let mut late = Duration::ZERO;
    let mut interrupted = 0;
    let rounds = Scale::now().pick(8, 200);
    for round in 0..rounds {
        for (name, check) in CHECKS {
            let outcome = check(&mut late, &mut interrupted);
            row.trial(outcome.map_err(|why| format!("round {round}, {name}: {why}")));
        }
    }
    let fired = FIRED.load(Ordering::Relaxed);
    row.trial(match fired > rounds as u64 {
        true => Ok(()),
        false => Err(format!("the handler ran only {fired} times")),
    });
    row.worst = format!(
        "{} ms past a deadline at most; {fired} signals, {interrupted} Socket calls Interrupted",
        late.as_millis()
    );
    row.finish();
}

type Check = fn(&mut Duration, &mut u64) -> Result<(), String>;

const CHECKS: [(&str, Check); 7] = [
    ("Channel recv with a timeout", recv_times_out),
    ("Channel recv, message late", recv_late_message),
    ("Channel send, peer drains late", send_drained_late),
    ("Channel send with a timeout", send_times_out),
    ("Socket recv", socket_recv),
    ("Child wait and wait_timeout", child_waits),
    ("spawn", spawn_under_signals),
];

/// Runs `f` on a helper thread that never takes the signal, so that it goes to the
/// blocked thread.
fn helper<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        // SAFETY: the set is a zeroed local initialised by sigemptyset before use.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGALRM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        f()
    })
}

fn check_deadline(started: Instant, late: &mut Duration) -> Result<(), String> {
    let took = started.elapsed();
    *late = (*late).max(took.saturating_sub(TIMEOUT));
    match took >= TIMEOUT && took <= TIMEOUT + SLACK {
        true => Ok(()),
        false => Err(format!(
            "returned after {took:?} for a timeout of {TIMEOUT:?}"
        )),
    }
}

fn channels(ty: Type) -> (Channel<Vec<u8>>, Channel<Vec<u8>>) {
    let (a, b) = pair(ty).unwrap();
    (Channel::new(a).unwrap(), Channel::new(b).unwrap())
}

fn recv_times_out(late: &mut Duration, _: &mut u64) -> Result<(), String> {
    let (_a, mut b) = channels(Type::STREAM);
    b.read_timeout(Some(TIMEOUT));
    let started = Instant::now();
    match b.recv() {
        Err(err) if err.kind() == ErrorKind::TimedOut => check_deadline(started, late),
        other => Err(format!("{other:?}")),
    }
}

fn recv_late_message(_: &mut Duration, _: &mut u64) -> Result<(), String> {
    let (mut a, mut b) = channels(Type::SEQPACKET);
    let sender = helper(move || {
        std::thread::sleep(Duration::from_millis(30));
        a.send(b"late").unwrap();
        a
    });
    let got = b.recv();
    sender.join().unwrap();
    match got {
        Ok(Some(message)) if message == b"late" => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn send_drained_late(_: &mut Duration, _: &mut u64) -> Result<(), String> {
    let (mut a, mut b) = channels(Type::STREAM);
    let receiver = helper(move || {
        std::thread::sleep(Duration::from_millis(30));
        b.recv().map(|message| message.map(|message| message.len()))
    });
    let big = vec![4; 4 << 20];
    let sent = a.send(&big);
    let got = receiver.join().unwrap();
    match (sent, got) {
        (Ok(()), Ok(Some(len))) if len == big.len() => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

fn send_times_out(late: &mut Duration, _: &mut u64) -> Result<(), String> {
    let (mut a, _b) = channels(Type::STREAM);
    a.write_timeout(Some(TIMEOUT));
    let big = vec![4; 16 << 20];
    let started = Instant::now();
    match a.send(&big) {
        Err(err) if err.kind() == ErrorKind::TimedOut => check_deadline(started, late),
        other => Err(format!("{other:?}")),
    }
}

/// One `recv` system call: it returns the message, or `Interrupted` (then again).
fn socket_recv(_: &mut Duration, interrupted: &mut u64) -> Result<(), String> {
    let (a, b) = pair(Type::STREAM).unwrap();
    let sender = helper(move || {
        std::thread::sleep(Duration::from_millis(20));
        a.send(b"x").unwrap();
        a
    });
    let outcome = loop {
        match b.recv(&mut [0; 4]) {
            Ok(1) => break Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => *interrupted += 1,
            other => break Err(format!("{other:?}")),
        }
    };
    sender.join().unwrap();
    outcome
}

fn child_waits(late: &mut Duration, _: &mut u64) -> Result<(), String> {
    let (mut quick, _end) = SpawnOptions::new()
        .spawn_program(Program::new("sleep").arg("0.02"))
        .map_err(|err| err.to_string())?;
    match quick.wait() {
        Ok(status) if status.success() => {}
        other => return Err(format!("wait: {other:?}")),
    }
    let (mut slow, _end) = SpawnOptions::new()
        .kill_on_drop(true)
        .spawn_program(Program::new("sleep").arg("10"))
        .map_err(|err| err.to_string())?;
    let started = Instant::now();
    match slow.wait_timeout(TIMEOUT) {
        Ok(None) => check_deadline(started, late),
        other => Err(format!("wait_timeout: {other:?}")),
    }
}

fn spawn_under_signals(_: &mut Duration, _: &mut u64) -> Result<(), String> {
    for _ in 0..5 {
        let (mut child, _end) = SpawnOptions::new()
            .spawn_program(&Program::new("true"))
            .map_err(|err| format!("spawn_program: {err}"))?;
        child.wait().map_err(|err| err.to_string())?;
        let mut cmd = std::process::Command::new("true");
        let (mut child, _end) = SpawnOptions::new()
            .spawn(&mut cmd)
            .map_err(|err| format!("spawn: {err}"))?;
        child.wait().map_err(|err| err.to_string())?;
    }
    Ok(())
}
