//! `fork`: each side gets its end, the other end closed; the child can be waited for,
//! waited for with a timeout, and killed.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use sockpair::{Fork, Type, exit_immediately, fork};

use crate::util::{TYPES, watchdog};

#[test]
fn the_child_talks_back_and_its_exit_code_arrives() {
    watchdog(|| {
        for ty in TYPES {
            // SAFETY: the child only calls recv, send and _exit.
            match unsafe { fork(ty) }.unwrap() {
                Fork::Child { socket } => {
                    let mut buf = [0; 32];
                    let code = match socket.recv(&mut buf) {
                        Ok(n) => match socket.send(&buf[..n]) {
                            Ok(_) => 7,
                            Err(_) => 1,
                        },
                        Err(_) => 1,
                    };
                    exit_immediately(code)
                }
                Fork::Parent { mut child, socket } => {
                    socket.send(b"echo").unwrap();
                    let mut buf = [0; 32];
                    let n = socket.recv(&mut buf).unwrap();
                    assert_eq!(&buf[..n], b"echo", "{ty:?}");
                    assert_eq!(child.wait().unwrap().code(), Some(7));
                    assert_eq!(child.wait().unwrap().code(), Some(7), "the status is kept");
                }
            }
        }
    });
}

#[test]
fn the_childs_end_is_closed_in_the_parent_so_its_exit_is_eof() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            // SAFETY: the child only calls _exit.
            match unsafe { fork(ty) }.unwrap() {
                Fork::Child { socket: _ } => exit_immediately(0),
                Fork::Parent { mut child, socket } => {
                    let mut buf = [0; 4];
                    assert_eq!(socket.recv(&mut buf).unwrap(), 0, "{ty:?}");
                    assert_eq!(socket.send(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
                    assert!(child.wait().unwrap().success());
                }
            }
        }
    });
}

#[test]
fn the_parents_end_is_closed_in_the_child() {
    watchdog(|| {
        // SAFETY: the child only calls recv and _exit.
        match unsafe { fork(Type::STREAM) }.unwrap() {
            Fork::Child { socket } => {
                // EOF can only come if no copy of the parent's end is left, ours included.
                let mut buf = [0; 4];
                exit_immediately(match socket.recv(&mut buf) {
                    Ok(0) => 0,
                    _ => 1,
                })
            }
            Fork::Parent { mut child, socket } => {
                drop(socket);
                let status = child.wait_timeout(Duration::from_secs(10)).unwrap();
                if status.is_none() {
                    child.kill().unwrap();
                    child.wait().unwrap();
                }
                assert!(status.expect("the child saw EOF and exited").success());
            }
        }
    });
}

#[test]
fn wait_timeout_then_kill_a_child_that_hangs() {
    watchdog(|| {
        // SAFETY: the child only calls recv and _exit.
        match unsafe { fork(Type::STREAM) }.unwrap() {
            Fork::Child { socket } => {
                let mut buf = [0; 1];
                // Blocks until the parent's end goes away; the parent kills us first.
                let _ = socket.recv(&mut buf);
                exit_immediately(3)
            }
            Fork::Parent { mut child, socket } => {
                let start = Instant::now();
                assert_eq!(
                    child.wait_timeout(Duration::from_millis(100)).unwrap(),
                    None
                );
                assert!(start.elapsed() >= Duration::from_millis(100));
                assert_eq!(child.try_wait().unwrap(), None);
                child.kill().unwrap();
                let status = child
                    .wait_timeout(Duration::from_secs(10))
                    .unwrap()
                    .expect("killed");
                assert_eq!(status.signal(), Some(libc::SIGKILL));
                child.kill().unwrap();
                drop(socket);
            }
        }
    });
}
