//! `SpawnOptions::spawn`: the child's end at a chosen fd, and nowhere else.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sockpair::{Child, Convention, Socket, SpawnOptions, Type};

use crate::child_mode::{FD, MODE};
use crate::util::{TYPES, in_fresh_process, open_fds, watchdog};

/// This test binary as a child in `mode`, expecting its end at `fd`.
fn child_command(mode: &str, fd: i32) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(MODE, mode).env(FD, fd.to_string());
    cmd
}

/// Sends the go byte and parses the child's report into key → value.
fn report(child: &mut Child, socket: &Socket) -> BTreeMap<String, String> {
    socket.send(b"g").unwrap();
    let mut text = Vec::new();
    let mut buf = [0; 65536];
    loop {
        let n = socket.recv(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if socket.ty().unwrap() != Type::STREAM {
            break; // one record is the whole report
        }
    }
    assert!(child.wait().unwrap().success());
    String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn spawn_report(options: &SpawnOptions, fd: i32) -> BTreeMap<String, String> {
    let (mut child, socket) = options.spawn(&mut child_command("report", fd)).unwrap();
    report(&mut child, &socket)
}

#[test]
fn the_child_holds_its_stdio_and_its_end_at_fd_3_and_nothing_else() {
    watchdog(|| {
        for ty in TYPES {
            let r = spawn_report(SpawnOptions::new().ty(ty), 3);
            assert_eq!(r["fds"], "0,1,2,3", "{ty:?}");
            assert_eq!(r["cloexec"], "false", "inheritable in the child");
            assert_eq!(r["nonblock"], "false", "blocking in the child");
            assert_eq!(r["type"], ty.raw().to_string());
            assert_eq!(r["env:SOCKPAIR_FD"], "3");
        }
    });
}

#[test]
fn a_chosen_fd_and_variable() {
    watchdog(|| {
        let options = SpawnOptions::new()
            .child_fd(9)
            .convention(Convention::Plain {
                env: "MY_END".into(),
            })
            .clone();
        let r = spawn_report(&options, 9);
        assert_eq!(r["fds"], "0,1,2,9");
        assert!(!r.contains_key("env:SOCKPAIR_FD"));
        assert_eq!(
            r.get("env:MY_END"),
            None,
            "not IT_/SOCKPAIR_ prefixed: listed below"
        );
        let (mut child, socket) = options
            .spawn(child_command("report", 9).env("IT_EXPECT", "x"))
            .unwrap();
        assert_eq!(report(&mut child, &socket)["env:IT_EXPECT"], "x");
    });
}

#[test]
fn each_convention_sets_its_variables() {
    watchdog(|| {
        let r = spawn_report(SpawnOptions::new().convention(Convention::Node), 3);
        assert_eq!(r["env:NODE_CHANNEL_FD"], "3");
        assert_eq!(r["env:NODE_CHANNEL_SERIALIZATION_MODE"], "json");

        let r = spawn_report(
            SpawnOptions::new()
                .convention(Convention::Wayland)
                .child_fd(5),
            5,
        );
        assert_eq!(r["env:WAYLAND_SOCKET"], "5");
        assert_eq!(r["fds"], "0,1,2,5");

        let r = spawn_report(SpawnOptions::new().convention(Convention::Systemd), 3);
        assert_eq!(r["env:LISTEN_FDS"], "1");
        assert_eq!(r["env:LISTEN_FDNAMES"], "sockpair");
        assert_eq!(
            r["env:LISTEN_PID"], r["pid"],
            "the child's own pid, written after the clone"
        );
    });
}

#[test]
fn the_childs_end_stays_blocking_when_the_parent_goes_nonblocking() {
    watchdog(|| {
        let (mut child, socket) = SpawnOptions::new()
            .spawn(&mut child_command("report", 3))
            .unwrap();
        socket.set_nonblocking(true).unwrap();
        socket.send(b"g").unwrap();
        socket.set_nonblocking(false).unwrap();
        let mut text = String::new();
        (&socket).read_to_string(&mut text).unwrap();
        assert!(child.wait().unwrap().success());
        assert!(text.contains("nonblock=false\n"), "{text}");
    });
}

/// Descriptors 4 and up that this process holds without close-on-exec (cargo's jobserver
/// pipe, for one), as ",n,m": what a child gets on top of fd 3 when nothing is withheld.
fn inheritable_fds() -> String {
    let fds = crate::util::fd_numbers();
    let fds = fds
        .iter()
        .filter(|&&fd| fd > 3 && crate::util::fd_flags(fd).is_some_and(|f| f.is_empty()));
    fds.map(|fd| format!(",{fd}")).collect()
}

#[test]
fn children_spawned_from_eight_threads_at_once_get_only_their_own_end() {
    watchdog(|| {
        // With other descriptors withheld, and without: then only close-on-exec keeps
        // the ends of other threads' pairs (made meanwhile) out of each child.
        let inheritable = inheritable_fds();
        for close_others in [true, false] {
            let expected = if close_others {
                "0,1,2,3".to_owned()
            } else {
                format!("0,1,2,3{inheritable}")
            };
            let threads: Vec<_> = (0..8)
                .map(|i| {
                    std::thread::spawn(move || {
                        let mut reports = Vec::new();
                        for round in 0..5 {
                            let mut cmd = child_command("report", 3);
                            if (i + round) % 2 == 1 {
                                cmd.stdin(Stdio::null()); // through std's spawn, with a pre_exec hook
                            }
                            let ty = TYPES[(i + round) % 3];
                            let (mut child, socket) = SpawnOptions::new()
                                .ty(ty)
                                .close_other_fds(close_others)
                                .spawn(&mut cmd)
                                .unwrap();
                            // Meanwhile, more pairs appear in this process.
                            let _noise = sockpair::pair(Type::STREAM).unwrap();
                            reports.push(report(&mut child, &socket)["fds"].clone());
                        }
                        reports
                    })
                })
                .collect();
            for thread in threads {
                for fds in thread.join().unwrap() {
                    assert_eq!(fds, expected, "close_other_fds({close_others})");
                }
            }
        }
    });
}

#[test]
fn the_command_keeps_its_args_env_cwd_and_stdio() {
    watchdog(|| {
        // Direct path: args, env and cwd.
        let mut cmd = child_command("report", 3);
        cmd.args(["one", "two words"])
            .env("IT_SET", "yes")
            .current_dir("/tmp");
        let (mut child, socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
        let r = report(&mut child, &socket);
        assert_eq!(r["args"], "one two words");
        assert_eq!(r["env:IT_SET"], "yes");
        assert_eq!(r["cwd"], "/tmp");

        // Through std: a piped stdout, a cleared environment, and a relative program
        // found through the Command's own PATH.
        let mut cmd = Command::new("sh");
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("IT_X", "x")
            .current_dir("/")
            .args([
                "-c",
                r#"echo "$0 $IT_X $SOCKPAIR_FD $(pwd) ${HOME-nohome}"; cat <&3 >&3"#,
                "arg0",
            ])
            .stdout(Stdio::piped());
        let (mut child, mut socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
        socket.write_all(b"via fd 3").unwrap();
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let mut echoed = String::new();
        socket.read_to_string(&mut echoed).unwrap();
        assert_eq!(echoed, "via fd 3");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "arg0 x 3 / nohome\n");
        assert!(child.wait().unwrap().success());
        // The convention's variable does not stay on the Command.
        let debug = format!("{cmd:?}");
        assert!(!debug.contains("SOCKPAIR_FD=\"3\""), "{debug}");
    });
}

#[test]
fn a_target_already_open_in_the_parent_is_replaced_only_in_the_child() {
    watchdog(|| {
        let file = std::fs::File::open("/dev/null").unwrap();
        let at_40 = rustix::io::fcntl_dupfd_cloexec(&file, 40).unwrap();
        let target = at_40.as_raw_fd();
        let r = spawn_report(SpawnOptions::new().child_fd(target), target);
        assert_eq!(
            r["type"],
            Type::STREAM.raw().to_string(),
            "the socket, not our file"
        );
        assert!(
            rustix::fs::fstat(&at_40).is_ok_and(|stat| stat.st_rdev != 0),
            "ours is still /dev/null"
        );
    });
}

#[test]
fn a_target_equal_to_the_source_is_made_inheritable() {
    in_fresh_process("spawn::same_number_inner");
}

#[test]
#[ignore = "run alone in a fresh process by a_target_equal_to_the_source_is_made_inheritable"]
fn same_number_inner() {
    // The next pair gets the two lowest free numbers: find out which.
    let (a, b) = sockpair::pair(Type::STREAM).unwrap();
    let child_end_number = b.as_raw_fd();
    drop((a, b));
    for cmd in [child_command("report", child_end_number), {
        let mut cmd = child_command("report", child_end_number);
        cmd.stdin(Stdio::null());
        cmd
    }] {
        let mut cmd = cmd;
        let r = spawn_report(
            SpawnOptions::new().child_fd(child_end_number),
            child_end_number,
        );
        assert_eq!(
            r["cloexec"], "false",
            "dup2(n, n) would have left close-on-exec set"
        );
        let (mut child, socket) = SpawnOptions::new()
            .child_fd(child_end_number)
            .spawn(&mut cmd)
            .unwrap();
        let r = report(&mut child, &socket);
        assert_eq!(r["fds"], format!("0,1,2,{child_end_number}"));
    }
}

#[test]
fn descriptors_the_parent_inherited_are_not_passed_on_unless_asked() {
    in_fresh_process("spawn::inherited_fds_inner");
}

#[test]
#[ignore = "run alone in a fresh process by descriptors_the_parent_inherited_are_not_passed_on_unless_asked"]
fn inherited_fds_inner() {
    // An inheritable descriptor, as a careless parent of ours might have left us.
    let file = std::fs::File::open("/dev/null").unwrap();
    let leaked = rustix::io::fcntl_dupfd_cloexec(&file, 20).unwrap();
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    let passed_on = inheritable_fds();
    assert!(passed_on.contains(",20"));
    for through_std in [false, true] {
        let make = || {
            let mut cmd = child_command("report", 3);
            if through_std {
                cmd.stdin(Stdio::null());
            }
            cmd
        };
        let (mut child, socket) = SpawnOptions::new().spawn(&mut make()).unwrap();
        assert_eq!(
            report(&mut child, &socket)["fds"],
            "0,1,2,3",
            "std path: {through_std}"
        );
        let (mut child, socket) = SpawnOptions::new()
            .close_other_fds(false)
            .spawn(&mut make())
            .unwrap();
        assert_eq!(
            report(&mut child, &socket)["fds"],
            format!("0,1,2,3{passed_on}"),
            "std path: {through_std}"
        );
    }
}

#[test]
fn a_killed_child_gives_eof_or_reset_within_a_bounded_time() {
    watchdog(|| {
        let mut cmd = child_command("flood", 3);
        let (mut child, socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
        let mut buf = [0; 4096];
        assert!(socket.recv(&mut buf).unwrap() > 0, "the child is writing");
        child.kill().unwrap();
        let start = Instant::now();
        loop {
            match socket.recv(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // what was already in flight
                Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
                Err(err) => panic!("{err}"),
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(socket.send(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(
            !std::path::Path::new(&format!("/proc/{}", child.id())).exists(),
            "reaped: no zombie"
        );
    });
}

#[test]
fn an_echo_child_round_trips_and_exits_on_eof() {
    watchdog(|| {
        for ty in [Type::STREAM, Type::SEQPACKET] {
            let (mut child, socket) = SpawnOptions::new()
                .ty(ty)
                .spawn(&mut child_command("echo", 3))
                .unwrap();
            socket.send(b"ping").unwrap();
            let mut buf = [0; 16];
            let n = socket.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"ping");
            socket.shutdown(std::net::Shutdown::Write).unwrap();
            assert_eq!(socket.recv(&mut buf).unwrap(), 0);
            assert!(
                child
                    .wait_timeout(Duration::from_secs(10))
                    .unwrap()
                    .unwrap()
                    .success()
            );
        }
    });
}

#[test]
fn bad_options_are_refused_before_anything_starts() {
    let cases: [(SpawnOptions, &str); 4] = [
        (SpawnOptions::new().child_fd(2).clone(), "child_fd 2"),
        (
            SpawnOptions::new()
                .convention(Convention::Node)
                .ty(Type::SEQPACKET)
                .clone(),
            "stream",
        ),
        (
            SpawnOptions::new()
                .convention(Convention::Systemd)
                .child_fd(4)
                .clone(),
            "fd 3",
        ),
        (SpawnOptions::new().child_fd(-1).clone(), "child_fd -1"),
    ];
    for (options, expected) in cases {
        let err = options.spawn(&mut Command::new("true")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(expected), "{err}");
    }
    let mut needs_std = Command::new("true");
    needs_std.stdout(Stdio::null());
    let err = SpawnOptions::new()
        .convention(Convention::Systemd)
        .spawn(&mut needs_std)
        .unwrap_err();
    assert!(err.to_string().contains("LISTEN_PID"), "{err}");
    let err = SpawnOptions::new()
        .spawn(Command::new("true").arg("a\0b"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_failed_spawn_leaves_no_child_and_no_descriptor() {
    in_fresh_process("spawn::failed_spawn_inner");
}

#[test]
#[ignore = "run alone in a fresh process by a_failed_spawn_leaves_no_child_and_no_descriptor"]
fn failed_spawn_inner() {
    let before = open_fds();
    let missing = SpawnOptions::new()
        .spawn(&mut Command::new("sockpair-no-such-program"))
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let plain_file =
        std::env::temp_dir().join(format!("sockpair-not-executable-{}", std::process::id()));
    std::fs::write(&plain_file, "#!/bin/sh\n").unwrap();
    let not_executable = SpawnOptions::new()
        .spawn(&mut Command::new(&plain_file))
        .unwrap_err();
    std::fs::remove_file(&plain_file).unwrap();
    assert_eq!(
        not_executable.kind(),
        ErrorKind::PermissionDenied,
        "{not_executable}"
    );
    let mut through_std = Command::new("sockpair-no-such-program");
    through_std.stdin(Stdio::null());
    let missing = SpawnOptions::new().spawn(&mut through_std).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let bad_cwd = SpawnOptions::new()
        .spawn(Command::new("true").current_dir("/no/such/dir"))
        .unwrap_err();
    assert_eq!(bad_cwd.kind(), ErrorKind::NotFound);
    assert_eq!(open_fds(), before);
    let children: String = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|task| std::fs::read_to_string(task.unwrap().path().join("children")).unwrap())
        .collect();
    assert_eq!(children.trim(), "", "no child left running or unreaped");
}

#[test]
fn from_inherited_checks_takes_and_hides_the_end() {
    watchdog(|| {
        let (mut child, socket) = SpawnOptions::new()
            .convention(Convention::Plain {
                env: "IT_UNUSED".into(),
            })
            .spawn(&mut child_command("inherit", 3))
            .unwrap();
        let mut text = String::new();
        (&socket).read_to_string(&mut text).unwrap();
        assert!(child.wait().unwrap().success(), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "missing: NotFound: IT_VAR is not set");
        assert_eq!(
            lines[1],
            "text: InvalidData: IT_VAR=\"three\" is not a descriptor number"
        );
        assert_eq!(
            lines[2],
            "negative: InvalidData: IT_VAR=\"-1\" is not a descriptor number"
        );
        assert_eq!(
            lines[3],
            "closed: InvalidInput: IT_VAR=999: no open descriptor has this number (EBADF)"
        );
        assert!(
            lines[4].starts_with("not a socket: InvalidInput: IT_VAR="),
            "{}",
            lines[4]
        );
        assert!(
            lines[4].ends_with("the descriptor is not a socket (ENOTSOCK)"),
            "{}",
            lines[4]
        );
        assert_eq!(lines[5], "real: ok");
        assert_eq!(lines[6], "cloexec after: true");
        assert_eq!(lines[7], "var after: None");
        assert_eq!(lines[8], "grandchild: unset closed");
    });
}

#[test]
fn a_child_can_die_with_the_thread_that_spawned_it() {
    watchdog(|| {
        for through_std in [false, true] {
            let spawn = |die: bool| {
                std::thread::spawn(move || {
                    let mut cmd = Command::new("sleep");
                    cmd.arg("30");
                    if through_std {
                        cmd.stdin(Stdio::null());
                    }
                    SpawnOptions::new()
                        .die_with_parent(die)
                        .spawn(&mut cmd)
                        .unwrap()
                })
                .join()
                .unwrap()
            };
            // The spawning thread has exited: the child was told to die with it.
            let (mut child, _socket) = spawn(true);
            let status = child.wait_timeout(Duration::from_secs(10)).unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.and_then(|s| s.signal()),
                Some(libc::SIGKILL),
                "std path: {through_std}"
            );
            // Without it, the child lives on.
            let (mut child, _socket) = spawn(false);
            assert_eq!(
                child.wait_timeout(Duration::from_millis(200)).unwrap(),
                None
            );
            child.kill().unwrap();
            child.wait().unwrap();
        }
    });
}
