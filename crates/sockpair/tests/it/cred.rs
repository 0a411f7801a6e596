//! Peer credentials: what the kernel really reports for a pair.

use sockpair::{Fork, Type, exit_immediately, fork, pair};

use crate::util::{TYPES, watchdog};

#[test]
fn both_ends_name_the_creating_process() {
    for ty in TYPES {
        let (a, b) = pair(ty).unwrap();
        for end in [&a, &b] {
            let cred = end.peer_cred().unwrap();
            assert_eq!(cred.pid(), Some(std::process::id() as i32), "{ty:?}");
            assert_eq!(cred.uid(), rustix::process::getuid().as_raw());
            assert_eq!(cred.gid(), rustix::process::getgid().as_raw());
        }
    }
}

#[test]
fn after_fork_both_sides_still_see_the_creator() {
    watchdog(|| {
        let parent_pid = std::process::id() as i32;
        // SAFETY: the child only calls getsockopt, send and _exit.
        match unsafe { fork(Type::STREAM) }.unwrap() {
            Fork::Child { socket } => {
                let pid = socket
                    .peer_cred()
                    .map_or(-1, |cred| cred.pid().unwrap_or(0));
                let sent = socket.send(&pid.to_be_bytes());
                exit_immediately(if sent.is_ok() { 0 } else { 1 })
            }
            Fork::Parent { mut child, socket } => {
                let mut buf = [0; 4];
                use std::io::Read;
                (&socket).read_exact(&mut buf).unwrap();
                assert!(child.wait().unwrap().success());
                assert_eq!(
                    i32::from_be_bytes(buf),
                    parent_pid,
                    "the child's end names the parent, the pair's creator"
                );
                assert_ne!(child.id() as i32, parent_pid);
                assert_eq!(
                    socket.peer_cred().unwrap().pid(),
                    Some(parent_pid),
                    "not the child"
                );
            }
        }
    });
}
