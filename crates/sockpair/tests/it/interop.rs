//! Real children of other runtimes, started with their conventions.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use sockpair::{Convention, SpawnOptions, Type};

use crate::util::watchdog;

/// A Node child that answers each message with `{"got": message}` and exits with 42 when
/// the channel disconnects.
const NODE_CHILD: &str = r#"
process.on('message', (m) => process.send({ got: m }));
process.on('disconnect', () => process.exit(42));
"#;

#[test]
fn a_node_child_answers_process_send_and_sees_disconnect() {
    watchdog(|| {
        let mut cmd = Command::new("node");
        cmd.args(["-e", NODE_CHILD]);
        let (mut child, mut socket) = SpawnOptions::new()
            .convention(Convention::Node)
            .spawn(&mut cmd)
            .unwrap();
        socket.write_all(b"{\"n\":1}\n\"two\"\n").unwrap();
        let mut replies = String::new();
        let mut buf = [0; 4096];
        while replies.matches('\n').count() < 2 {
            let n = socket.read(&mut buf).unwrap();
            assert!(n > 0, "node closed early: {replies}");
            replies.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        assert_eq!(replies, "{\"got\":{\"n\":1}}\n{\"got\":\"two\"}\n");
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let status = child
            .wait_timeout(Duration::from_secs(20))
            .unwrap()
            .expect("node exits");
        assert_eq!(status.code(), Some(42), "'disconnect' fired");
        assert_eq!(socket.read(&mut buf).unwrap(), 0, "and node closed its end");
    });
}

/// Asks libsystemd (through Debian's python3-systemd) what it was handed.
const SYSTEMD_CHILD: &str = r#"
import os, socket
from systemd import daemon
names = daemon.listen_fds_with_names()
ok = daemon.is_socket_unix(3, socket.SOCK_STREAM, 0)
s = socket.socket(fileno=3)
s.sendall(repr((names, ok)).encode())
"#;

#[test]
fn libsystemd_accepts_the_systemd_convention() {
    watchdog(|| {
        // Debian's python3, for which python3-systemd is packaged (installed by the test
        // script; see README).
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", SYSTEMD_CHILD]);
        let (mut child, mut socket) = SpawnOptions::new()
            .convention(Convention::Systemd)
            .ty(Type::STREAM)
            .spawn(&mut cmd)
            .unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).unwrap();
        assert!(
            child.wait().unwrap().success(),
            "python3-systemd missing? {answer}"
        );
        assert_eq!(answer, "({3: 'sockpair'}, True)");
    });
}
