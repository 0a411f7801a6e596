//! Real children of other runtimes, started with their conventions.

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use sockpair::{Channel, Convention, Program, SpawnOptions, Type};

use crate::util::watchdog;

/// A Node child that answers each message with `{"got": message}` and exits with 42 when
/// the channel disconnects.
pub(crate) const NODE_CHILD: &str = r#"
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
        let mut program = Program::new("/usr/bin/python3");
        program.args(["-c", SYSTEMD_CHILD]);
        let (mut child, mut socket) = SpawnOptions::new()
            .convention(Convention::Systemd)
            .ty(Type::STREAM)
            .spawn_program(&program)
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

/// A Python child on `multiprocessing.connection.Connection`: echoes each message
/// reversed until EOF, then sends 1.5 MB and exits.
pub(crate) const PYTHON_CHILD: &str = r#"
import os
from multiprocessing.connection import Connection
c = Connection(int(os.environ["SOCKPAIR_FD"]))
while True:
    try:
        m = c.recv_bytes()
    except EOFError:
        break
    c.send_bytes(m[::-1])
c.send_bytes(b"x" * 1_500_000)
"#;

#[test]
fn a_python_connection_child_exchanges_messages_both_ways() {
    watchdog(|| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", PYTHON_CHILD]);
        let (mut child, socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
        let mut channel: Channel<Vec<u8>> = Channel::new(socket).unwrap();
        channel.read_timeout(Some(Duration::from_secs(20)));
        channel.send(&b"hello".to_vec()).unwrap();
        assert_eq!(channel.recv().unwrap(), Some(b"olleh".to_vec()));
        channel.send(&Vec::new()).unwrap();
        assert_eq!(
            channel.recv().unwrap(),
            Some(Vec::new()),
            "an empty message both ways"
        );
        let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        channel.send(&big).unwrap();
        let mut reversed = big.clone();
        reversed.reverse();
        assert!(
            channel.recv().unwrap() == Some(reversed),
            "2 MB reversed by Python"
        );
        channel
            .socket()
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
        assert_eq!(
            channel.recv().unwrap(),
            Some(vec![b'x'; 1_500_000]),
            "1.5 MB from Python"
        );
        assert_eq!(channel.recv().unwrap(), None);
        assert!(child.wait().unwrap().success());
    });
}

#[test]
#[cfg(feature = "serde")]
fn a_node_child_exchanges_json_messages_with_a_channel() {
    use sockpair::{Framing, Json};
    watchdog(|| {
        let mut cmd = Command::new("node");
        cmd.args(["-e", NODE_CHILD]);
        let (mut child, socket) = SpawnOptions::new()
            .convention(Convention::Node)
            .spawn(&mut cmd)
            .unwrap();
        let mut channel: Channel<Json<serde_json::Value>> =
            Channel::with_framing(socket, Framing::Lines).unwrap();
        channel.read_timeout(Some(Duration::from_secs(20)));
        let messages = [
            serde_json::json!({"n": 1, "s": "a\nb"}),
            serde_json::json!([1, 2]),
            serde_json::json!("text"),
        ];
        for message in &messages {
            channel.send(message).unwrap();
        }
        for message in messages {
            let reply = channel.recv().unwrap().expect("a reply");
            assert_eq!(reply, serde_json::json!({ "got": message }));
        }
        channel
            .socket()
            .shutdown(std::net::Shutdown::Write)
            .unwrap();
        assert!(
            channel.recv().unwrap().is_none(),
            "Node closes its end on disconnect"
        );
        let status = child
            .wait_timeout(Duration::from_secs(20))
            .unwrap()
            .expect("node exits");
        assert_eq!(status.code(), Some(42), "'disconnect' fired");
    });
}
