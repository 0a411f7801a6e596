//! Peer death: the peer is SIGKILLed at a random moment while messages (small, 64 MiB on
//! a stream, 64 MiB on seqpacket through the memfd path) or descriptors are in flight,
//! with the survivor blocked in `recv` or `send`, with or without a timeout. And the
//! other direction: the parent dies, and its child (with `die_with_parent`, or blocked
//! in `recv`) must end; a `kill_on_drop` child must be gone when its `Child` is dropped.
//!
//! Bound: the survivor returns within 5 s of the kill, no zombie is left, and this
//! process has the same descriptors after each trial as before it.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use sockpair::{Channel, SpawnOptions, Type};

use crate::children::{self, DIE_WITH_PARENT, GRANDCHILD};
use crate::{Rng, Row, Scale, gone, serial, util};

/// How long a survivor may take to notice.
const BOUND: Duration = Duration::from_secs(5);

/// What the peer does while it is killed, and what the survivor does meanwhile.
#[derive(Clone, Copy, Debug)]
enum Case {
    /// The peer sends small messages; the survivor receives.
    Small,
    /// 64 MiB messages on a stream pair.
    LargeStream,
    /// 64 MiB messages on a seqpacket pair (each a sealed memfd).
    LargeRecords,
    /// Messages with three descriptors each.
    Fds,
    /// The peer reads nothing; the survivor sends until it blocks.
    BlockedSend,
}

const CASES: [Case; 5] = [
    Case::Small,
    Case::LargeStream,
    Case::LargeRecords,
    Case::Fds,
    Case::BlockedSend,
];

#[test]
fn peer_death() {
    let _serial = serial();
    let scale = Scale::now();
    let mut rng = Rng::new("peer_death");
    let mut row = Row::new("peer death (child killed)");
    let mut worst = Duration::ZERO;
    for trial in 0..scale.pick(30, 600) {
        let case = CASES[trial % CASES.len()];
        let timeout = (trial / CASES.len()) % 2 == 1;
        let delay = rng.duration(Duration::from_millis(match case {
            Case::LargeStream | Case::LargeRecords => 300,
            _ => 30,
        }));
        let before = util::fd_numbers();
        let outcome = kill_the_child(case, timeout, delay).and_then(|took| {
            worst = worst.max(took);
            crate::same_fds(&before)
        });
        row.trial(
            outcome
                .map_err(|why| format!("{case:?}, timeout {timeout}, kill after {delay:?}: {why}")),
        );
    }
    row.worst = format!("{} ms from kill to return", worst.as_millis());
    row.finish();
}

/// One trial: returns how long the survivor took to return after the kill.
fn kill_the_child(case: Case, timeout: bool, delay: Duration) -> Result<Duration, String> {
    let (mode, ty) = match case {
        Case::Small => ("send-small", Type::STREAM),
        Case::LargeStream => ("send-large", Type::STREAM),
        Case::LargeRecords => ("send-large", Type::SEQPACKET),
        Case::Fds => ("send-fds", Type::STREAM),
        Case::BlockedSend => ("sleep", Type::STREAM),
    };
    let (mut child, socket) = SpawnOptions::new()
        .ty(ty)
        .spawn_program(&children::program(mode))
        .map_err(|err| format!("spawn: {err}"))?;
    let pid = child.id();
    let mut channel: Channel<Vec<u8>> = Channel::new(socket).map_err(|err| err.to_string())?;
    if timeout {
        channel.read_timeout(Some(Duration::from_secs(10)));
        channel.write_timeout(Some(Duration::from_secs(10)));
    }
    let killer = std::thread::spawn(move || {
        std::thread::sleep(delay);
        let killed_at = Instant::now();
        // SAFETY: kill takes a pid and a signal number and touches no memory; the
        // child is ours and not reaped yet, so the pid is still its own.
        let rc = unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill {pid}");
        killed_at
    });
    let survivor = survive(&mut channel, case);
    let returned = Instant::now();
    let killed_at = killer
        .join()
        .map_err(|_| "the killer thread panicked".to_string())?;
    survivor?;
    drop(channel);
    let status = child.wait().map_err(|err| format!("wait: {err}"))?;
    if std::os::unix::process::ExitStatusExt::signal(&status) != Some(libc::SIGKILL) {
        return Err(format!("the child ended with {status}, not SIGKILL"));
    }
    if !gone(pid) {
        return Err(format!("pid {pid} is still listed after wait"));
    }
    let took = returned.saturating_duration_since(killed_at);
    match took <= BOUND {
        true => Ok(took),
        false => Err(format!("the survivor returned {took:?} after the kill")),
    }
}

/// The survivor's side: receives (or sends) until the peer's death ends it. Any error
/// is fine, as long as it is one that says the peer is gone (or a cut frame).
fn survive(channel: &mut Channel<Vec<u8>>, case: Case) -> Result<(), String> {
    use sockpair::ErrorKind;
    let ended = |kind: ErrorKind| matches!(kind, ErrorKind::Io | ErrorKind::UnexpectedEof);
    match case {
        Case::BlockedSend => {
            let payload = vec![1; 64 << 10];
            loop {
                match channel.send(&payload) {
                    Ok(()) => {}
                    Err(err) if ended(err.kind()) => return Ok(()),
                    Err(err) => return Err(format!("send: {err}")),
                }
            }
        }
        _ => loop {
            let mut fds: Vec<OwnedFd> = Vec::new();
            match channel.recv_with_fds(&mut fds) {
                Ok(Some(message)) => {
                    let expected = match case {
                        Case::Fds => 3,
                        _ => 0,
                    };
                    if fds.len() != expected || message.is_empty() {
                        return Err(format!("{} bytes with {} fds", message.len(), fds.len()));
                    }
                    if matches!(case, Case::LargeStream | Case::LargeRecords)
                        && message.len() != children::LARGE
                    {
                        return Err(format!("a large message of {} bytes", message.len()));
                    }
                }
                Ok(None) => return Ok(()),
                Err(err) if ended(err.kind()) => return Ok(()),
                Err(err) => return Err(format!("recv: {err}")),
            }
        },
    }
}

/// The parent dies: a `middle` child starts a grandchild, and is killed. With
/// `die_with_parent` the grandchild (asleep, reading nothing) must be killed too; without
/// it, a grandchild blocked in `recv` on its pair with the middle one must see the end
/// of the stream and exit cleanly by itself. And a `kill_on_drop` child must be gone,
/// reaped, when its `Child` is dropped.
#[test]
fn parent_death() {
    let _serial = serial();
    let scale = Scale::now();
    let mut rng = Rng::new("parent_death");
    let mut row = Row::new("peer death (parent killed)");
    become_subreaper();
    let mut worst = Duration::ZERO;
    for trial in 0..scale.pick(12, 150) {
        let delay = rng.duration(Duration::from_millis(20));
        let outcome = match trial % 3 {
            0 => kill_the_middle("sleep", true, delay),
            1 => kill_the_middle("recv-until-eof", false, delay),
            _ => drop_a_kill_on_drop_child(delay),
        };
        row.trial(outcome.map(|took| worst = worst.max(took)));
    }
    row.worst = format!(
        "{} ms from the parent's death to the child's",
        worst.as_millis()
    );
    row.finish();
}

/// Makes orphaned grandchildren ours, so that this process can reap them and see how
/// they ended.
fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0);
}

fn kill_the_middle(
    grandchild: &str,
    die_with_parent: bool,
    delay: Duration,
) -> Result<Duration, String> {
    let mut program = children::program("middle");
    program.env(GRANDCHILD, grandchild);
    if die_with_parent {
        program.env(DIE_WITH_PARENT, "1");
    }
    let (mut middle, socket) = SpawnOptions::new()
        .ty(Type::SEQPACKET)
        .spawn_program(&program)
        .map_err(|err| format!("spawn: {err}"))?;
    let mut buf = [0; 32];
    let n = socket
        .recv(&mut buf)
        .map_err(|err| format!("grandchild pid: {err}"))?;
    let pid: i32 = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|pid| pid.parse().ok())
        .ok_or("no pid")?;
    std::thread::sleep(delay);
    middle.kill().map_err(|err| err.to_string())?;
    let killed_at = Instant::now();
    middle.wait().map_err(|err| err.to_string())?;
    // The orphan is ours now (we are a subreaper): wait for it, within the bound.
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into our local integer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            break;
        }
        if rc == -1 {
            return Err(format!(
                "waitpid {pid}: {}",
                std::io::Error::last_os_error()
            ));
        }
        if killed_at.elapsed() > BOUND {
            // SAFETY: as in kill_the_child; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(format!(
                "grandchild {grandchild} alive {BOUND:?} after its parent died"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = killed_at.elapsed();
    let expected = match die_with_parent {
        true => libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        false => libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
    };
    match expected && gone(pid as u32) {
        true => Ok(took),
        false => Err(format!("grandchild {grandchild}: status {status:#x}")),
    }
}

fn drop_a_kill_on_drop_child(delay: Duration) -> Result<Duration, String> {
    let (child, _socket) = SpawnOptions::new()
        .kill_on_drop(true)
        .spawn_program(&children::program("send-small"))
        .map_err(|err| format!("spawn: {err}"))?;
    let pid = child.id();
    std::thread::sleep(delay);
    let dropped_at = Instant::now();
    drop(child);
    let took = dropped_at.elapsed();
    match gone(pid) {
        true => Ok(took),
        false => Err(format!(
            "kill_on_drop child {pid} still listed after the drop"
        )),
    }
}
