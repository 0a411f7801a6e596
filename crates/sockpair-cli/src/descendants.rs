//! Leaving nothing behind: when `sockpair run` or `pipe` is told to stop (SIGINT,
//! SIGTERM, SIGHUP), every process it started, and every descendant of those, stops too.
//!
//! sockpair makes itself a child subreaper, so that a descendant whose parent dies is
//! re-parented to sockpair instead of init and can still be found. On a signal, it
//! forwards the signal to every descendant it can find (a program may want to clean
//! up), gives them [`GRACE`] to exit, then `SIGKILL`s whatever is left, and finally dies
//! of the same signal itself. The children stay in our process group, so a child that
//! reads the terminal still can. After a `SIGKILL` to sockpair, which nothing can catch,
//! the direct children die with it (`PR_SET_PDEATHSIG`); their own descendants remain.

use std::collections::BTreeSet;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::sys;

/// How long forwarded signals have to end the descendants before `SIGKILL`.
const GRACE: Duration = Duration::from_millis(1000);

/// How long `SIGKILL` may take to empty the tree before we go anyway.
const KILL_WAIT: Duration = Duration::from_millis(800);

/// Set once a signal has come: the sweep then owns the end of the process.
static SWEEPING: AtomicBool = AtomicBool::new(false);

/// Becomes a child subreaper and starts the thread that sweeps on SIGINT, SIGTERM and
/// SIGHUP. Call before starting any thread or child.
pub fn watch() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    let blocked = sys::block(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])?;
    std::thread::spawn(move || {
        let Ok(signal) = sys::wait(&blocked) else {
            return;
        };
        SWEEPING.store(true, Ordering::SeqCst);
        sweep(signal);
        sys::die_of(signal)
    });
    Ok(())
}

/// Called by `main` before it returns: if a sweep has begun, lets it finish (it ends
/// the process) rather than exit under it.
pub fn finish() {
    while SWEEPING.load(Ordering::SeqCst) {
        std::thread::park();
    }
}

/// Forwards `signal` to every descendant, waits up to [`GRACE`] for them to go, then
/// kills what is left.
fn sweep(signal: libc::c_int) {
    let me = rustix::process::getpid();
    let forwarded = Signal::from_named_raw(signal).unwrap_or(Signal::TERM);
    let mut told = BTreeSet::new();
    let start = Instant::now();
    loop {
        let alive = descendants(me);
        if alive.is_empty() || start.elapsed() > GRACE {
            break;
        }
        for &pid in alive.difference(&told) {
            signal_process(pid, forwarded);
        }
        told.extend(alive);
        std::thread::sleep(Duration::from_millis(5));
    }
    let start = Instant::now();
    loop {
        let alive = descendants(me);
        if alive.is_empty() || start.elapsed() > KILL_WAIT {
            break;
        }
        for &pid in &alive {
            signal_process(pid, Signal::KILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal_process(pid: i32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// The living (not zombie) descendants of `root`, from `/proc/*/stat`.
pub fn descendants(root: Pid) -> BTreeSet<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue; // gone meanwhile
            };
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            let mut fields = rest.split_whitespace();
            let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
                continue;
            };
            if let Ok(ppid) = ppid.parse::<i32>() {
                parent_of.push((pid, ppid, state == "Z"));
            }
        }
    }
    let mut found = BTreeSet::new();
    let mut frontier = vec![root.as_raw_pid()];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, _) in &parent_of {
            if ppid == parent && found.insert(pid) {
                frontier.push(pid);
            }
        }
    }
    // A zombie is dead; its children (re-parented to us) were found through it or us.
    found.retain(|pid| !parent_of.iter().any(|&(p, _, zombie)| p == *pid && zombie));
    found
}

/// Whether a signal is ending us: what the children report then is its doing, and says
/// nothing new.
pub fn stopping() -> bool {
    SWEEPING.load(Ordering::SeqCst)
}
