//! `SpawnOptions`: the child's end at a chosen fd, and nowhere else, on both paths:
//! `spawn(&mut Command)` through std and `spawn_program(&Program)` on sockpair's own.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sockpair::{Child, Convention, Program, Socket, SpawnOptions, Type};

use crate::child_mode::{FD, MODE};
use crate::util::{TYPES, in_fresh_process, open_fds, watchdog};

/// This test binary as a child in `mode`, expecting its end at `fd`.
pub(crate) fn child_program(mode: &str, fd: i32) -> Program {
    let mut program = Program::new(std::env::current_exe().unwrap());
    program.env(MODE, mode).env(FD, fd.to_string());
    program
}

/// The same, as a `Command` (std's path).
fn child_command(mode: &str, fd: i32) -> Command {
    child_program(mode, fd).to_command()
}

/// Starts `program` on the path chosen: std's (`through_std`) or sockpair's own.
fn spawn_on(options: &SpawnOptions, program: &Program, through_std: bool) -> (Child, Socket) {
    match through_std {
        true => options.spawn(&mut program.to_command()).unwrap(),
        false => options.spawn_program(program).unwrap(),
    }
}

const PATHS: [bool; 2] = [false, true];

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

/// The report of a child started on both paths; asserts they agree (but for the pid).
fn spawn_report(options: &SpawnOptions, fd: i32) -> BTreeMap<String, String> {
    let reports: Vec<_> = PATHS
        .into_iter()
        .map(|through_std| {
            let (mut child, socket) = spawn_on(options, &child_program("report", fd), through_std);
            let mut r = report(&mut child, &socket);
            r.retain(|key, _| !key.starts_with("ino:"));
            r
        })
        .collect();
    let without_pid = |r: &BTreeMap<String, String>| {
        let mut r = r.clone();
        r.remove("pid");
        r.remove("pgid");
        r
    };
    assert_eq!(
        without_pid(&reports[0]),
        without_pid(&reports[1]),
        "both paths agree"
    );
    reports.into_iter().next().unwrap()
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
            .spawn_program(child_program("report", 9).env("IT_EXPECT", "x"))
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

        let (mut child, socket) = SpawnOptions::new()
            .convention(Convention::Systemd)
            .spawn_program(&child_program("report", 3))
            .unwrap();
        let r = report(&mut child, &socket);
        assert_eq!(r["env:LISTEN_FDS"], "1");
        assert_eq!(r["env:LISTEN_FDNAMES"], "sockpair");
        assert_eq!(
            r["env:LISTEN_PID"], r["pid"],
            "the child's own pid, written after the clone"
        );
        let err = SpawnOptions::new()
            .convention(Convention::Systemd)
            .spawn(&mut child_command("report", 3))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("spawn_program"), "{err}");
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
                            let ty = TYPES[(i + round) % 3];
                            let (mut child, socket) = spawn_on(
                                SpawnOptions::new().ty(ty).close_other_fds(close_others),
                                &child_program("report", 3),
                                (i + round) % 2 == 1,
                            );
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
        // Both paths: args, env and cwd.
        let mut program = child_program("report", 3);
        program
            .args(["one", "two words"])
            .env("IT_SET", "yes")
            .env("IT_GONE", "no")
            .env_remove("IT_GONE")
            .current_dir("/tmp");
        for through_std in PATHS {
            let (mut child, socket) = spawn_on(&SpawnOptions::new(), &program, through_std);
            let r = report(&mut child, &socket);
            assert_eq!(r["args"], "one two words");
            assert_eq!(r["env:IT_SET"], "yes");
            assert!(!r.contains_key("env:IT_GONE"));
            assert_eq!(r["cwd"], "/tmp");
        }
        // A relative program path is found from the working directory, on both paths.
        let exe = std::env::current_exe().unwrap();
        let mut relative =
            Program::new(format!("./{}", exe.file_name().unwrap().to_str().unwrap()));
        relative
            .envs(
                child_program("report", 3)
                    .get_envs()
                    .map(|(k, v)| (k, v.unwrap())),
            )
            .current_dir(exe.parent().unwrap());
        for through_std in PATHS {
            let (mut child, socket) = spawn_on(&SpawnOptions::new(), &relative, through_std);
            assert_eq!(report(&mut child, &socket)["fds"], "0,1,2,3");
        }

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
        assert!(
            cmd.get_envs()
                .all(|(key, value)| key != "SOCKPAIR_FD" || value.is_none())
        );
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
    for through_std in PATHS {
        let (mut child, socket) = spawn_on(
            SpawnOptions::new().child_fd(child_end_number),
            &child_program("report", child_end_number),
            through_std,
        );
        let r = report(&mut child, &socket);
        assert_eq!(
            r["cloexec"], "false",
            "dup2(n, n) would have left close-on-exec set"
        );
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
    for through_std in PATHS {
        let program = child_program("report", 3);
        let (mut child, socket) = spawn_on(&SpawnOptions::new(), &program, through_std);
        assert_eq!(
            report(&mut child, &socket)["fds"],
            "0,1,2,3",
            "std path: {through_std}"
        );
        let (mut child, socket) = spawn_on(
            SpawnOptions::new().close_other_fds(false),
            &program,
            through_std,
        );
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
        let (mut child, socket) = SpawnOptions::new()
            .spawn_program(&child_program("flood", 3))
            .unwrap();
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
            let (mut child, socket) = spawn_on(
                SpawnOptions::new().ty(ty),
                &child_program("echo", 3),
                ty == Type::STREAM,
            );
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
    let (_r, w) = std::io::pipe().unwrap();
    let w2 = w.try_clone().unwrap();
    let w3 = w.try_clone().unwrap();
    let cases: [(SpawnOptions, &str); 8] = [
        (
            SpawnOptions::new().child_fd(-1).clone(),
            "fd -1 is negative",
        ),
        (
            SpawnOptions::new()
                .convention(Convention::Node)
                .ty(Type::SEQPACKET)
                .clone(),
            "stream",
        ),
        (SpawnOptions::new().fd(3, w).clone(), "the end's own number"),
        (
            SpawnOptions::new().fd(5, w2).fd(5, w3).clone(),
            "already given another descriptor",
        ),
        (
            SpawnOptions::new().child_fd(1 << 30).clone(),
            "RLIMIT_NOFILE",
        ),
        (
            SpawnOptions::new()
                .convention(Convention::Plain { env: "".into() })
                .clone(),
            "non-empty",
        ),
        (
            SpawnOptions::new()
                .convention(Convention::Plain { env: "A=B".into() })
                .clone(),
            "'='",
        ),
        (
            SpawnOptions::new()
                .convention(Convention::Plain { env: "A\0".into() })
                .clone(),
            "NUL",
        ),
    ];
    for (options, expected) in cases {
        for through_std in PATHS {
            let program = Program::new("true");
            let err = match through_std {
                true => options.spawn(&mut program.to_command()).unwrap_err(),
                false => options.spawn_program(&program).unwrap_err(),
            };
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }
    let err = SpawnOptions::new()
        .convention(Convention::Systemd)
        .child_fd(4)
        .spawn_program(&Program::new("true"))
        .unwrap_err();
    assert!(err.to_string().contains("fd 3"), "{err}");
    let err = SpawnOptions::new()
        .spawn(Command::new("true").arg("a\0b"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = SpawnOptions::new()
        .spawn_program(Program::new("true").arg("a\0b"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

/// A `Command` whose own `pre_exec` lowers `RLIMIT_NOFILE` to `limit`.
fn with_nofile_limit(mut cmd: Command, limit: u64) -> Command {
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            rustix::process::setrlimit(
                rustix::process::Resource::Nofile,
                rustix::process::Rlimit {
                    current: Some(limit),
                    maximum: Some(limit),
                },
            )
            .map_err(std::io::Error::from)
        })
    };
    cmd
}

#[test]
fn a_failed_spawn_leaves_no_child_and_no_descriptor() {
    in_fresh_process("spawn::failed_spawn_inner");
}

#[test]
#[ignore = "run alone in a fresh process by a_failed_spawn_leaves_no_child_and_no_descriptor"]
fn failed_spawn_inner() {
    let before = open_fds();
    let plain_file =
        std::env::temp_dir().join(format!("sockpair-not-executable-{}", std::process::id()));
    std::fs::write(&plain_file, "#!/bin/sh\n").unwrap();
    for through_std in PATHS {
        let spawn = |program: &Program| match through_std {
            true => SpawnOptions::new().spawn(&mut program.to_command()),
            false => SpawnOptions::new().spawn_program(program),
        };
        // The kernel's errno is kept on both paths, with the program and the step said.
        let missing = spawn(&Program::new("sockpair-no-such-program")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT), "{missing}");
        assert_eq!(missing.program(), "sockpair-no-such-program");
        assert!(
            missing
                .to_string()
                .starts_with("spawn 'sockpair-no-such-program': "),
            "{missing}"
        );
        let not_executable = spawn(&Program::new(&plain_file)).unwrap_err();
        assert_eq!(
            not_executable.kind(),
            ErrorKind::PermissionDenied,
            "{not_executable}"
        );
        assert_eq!(not_executable.raw_os_error(), Some(libc::EACCES));
        assert!(
            not_executable
                .to_string()
                .starts_with(&format!("spawn '{}': ", plain_file.display())),
            "{not_executable}"
        );
        let bad_cwd = spawn(Program::new("true").current_dir("/no/such/dir")).unwrap_err();
        assert_eq!(bad_cwd.kind(), ErrorKind::NotFound);
        assert_eq!(bad_cwd.raw_os_error(), Some(libc::ENOENT));
        // Into an io::Error for `?`: the same kind and message, the errno one downcast away.
        let converted = std::io::Error::from(
            spawn(Program::new("true").current_dir("/no/such/dir")).unwrap_err(),
        );
        assert_eq!(converted.kind(), ErrorKind::NotFound);
        assert_eq!(converted.to_string(), bad_cwd.to_string());
        let inner = converted.get_ref().unwrap();
        let inner = inner.downcast_ref::<sockpair::SpawnError>().unwrap();
        assert_eq!(inner.raw_os_error(), Some(libc::ENOENT));
        assert!(
            bad_cwd
                .to_string()
                .starts_with("spawn 'true': current_dir '/no/such/dir': "),
            "not \"program not found\": {bad_cwd}"
        );
    }
    // Refused options leave nothing open either.
    let (_r, w) = std::io::pipe().unwrap();
    let mut options = SpawnOptions::new();
    options.fd(3, w);
    assert!(options.spawn_program(&Program::new("true")).is_err());
    assert!(options.spawn(&mut Command::new("true")).is_err());
    drop((options, _r));
    // A user's pre_exec lowered the limit under the end's number: said, on std's path.
    let err = SpawnOptions::new()
        .child_fd(20)
        .spawn(&mut with_nofile_limit(Command::new("true"), 17))
        .unwrap_err();
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
    std::fs::remove_file(&plain_file).unwrap();
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
        for through_std in PATHS {
            let spawn = |die: bool| {
                std::thread::spawn(move || {
                    spawn_on(
                        SpawnOptions::new().die_with_parent(die),
                        Program::new("sleep").arg("30"),
                        through_std,
                    )
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

#[test]
fn a_users_pre_exec_runs_and_the_same_command_twice_gives_the_same_child() {
    watchdog(|| {
        let mut cmd = with_nofile_limit(child_command("report", 3), 17);
        cmd.env("IT_MINE", "1");
        let envs_before: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
            .collect();
        let mut reports = Vec::new();
        for _ in 0..3 {
            let (mut child, socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
            let mut r = report(&mut child, &socket);
            assert_eq!(r["nofile"], "17", "the closure ran");
            assert_eq!(r["fds"], "0,1,2,3");
            r.remove("pid");
            r.remove("pgid");
            r.retain(|key, _| !key.starts_with("ino:"));
            reports.push(r);
        }
        assert_eq!(reports[0], reports[1]);
        assert_eq!(reports[1], reports[2]);
        // Our variable is not left set; the Command's own are as they were.
        for (key, value) in cmd.get_envs() {
            if key == "SOCKPAIR_FD" {
                assert_eq!(value, None, "not left set");
            } else if !key.to_string_lossy().starts_with("SOCKPAIR_INTERNAL") {
                assert!(
                    envs_before
                        .iter()
                        .any(|(k, v)| k == key && v.as_deref() == value),
                    "{key:?} changed"
                );
            }
        }
        // Spawned by std alone afterwards, such a Command is still a plain Command.
        let mut plain = with_nofile_limit(Command::new("sh"), 17);
        plain.args(["-c", "ulimit -n"]);
        let (mut child, _socket) = SpawnOptions::new().spawn(&mut plain).unwrap();
        child.wait().unwrap();
        let out = plain.stdout(Stdio::piped()).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "17\n");
    });
}

#[test]
fn uid_gid_process_group_and_env_clear_are_honoured() {
    watchdog(|| {
        // A process group of its own, on both paths.
        let mut program = child_program("report", 3);
        program.process_group(0);
        for through_std in PATHS {
            let (mut child, socket) = spawn_on(&SpawnOptions::new(), &program, through_std);
            let r = report(&mut child, &socket);
            assert_eq!(r["pgid"], r["pid"], "std path: {through_std}");
        }
        // A cleared environment, on both paths: only what is set after, and ours.
        let mut program = Program::new(std::env::current_exe().unwrap());
        program
            .env("IT_DROPPED", "x")
            .env_clear()
            .env(MODE, "report")
            .env(FD, "3")
            .env("IT_KEPT", "y");
        for through_std in PATHS {
            let (mut child, socket) = spawn_on(&SpawnOptions::new(), &program, through_std);
            let r = report(&mut child, &socket);
            assert_eq!(
                r["envkeys"], "IT_KEPT,SOCKPAIR_FD,SOCKPAIR_IT_CHILD,SOCKPAIR_IT_FD",
                "std path: {through_std}"
            );
        }
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: uid/gid 65534 not tried");
            return;
        }
        // uid and gid through std: the child runs as nobody, with its end.
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", r#"echo "$(id -u) $(id -g)" >&3"#])
            .uid(65534)
            .gid(65534);
        let (mut child, mut socket) = SpawnOptions::new().spawn(&mut cmd).unwrap();
        let mut ids = String::new();
        socket.read_to_string(&mut ids).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(ids, "65534 65534\n");
    });
}

#[test]
fn several_descriptors_at_chosen_numbers() {
    in_fresh_process("spawn::several_descriptors_inner");
}

#[test]
#[ignore = "run alone in a fresh process by several_descriptors_at_chosen_numbers"]
fn several_descriptors_inner() {
    let before = open_fds();
    let open = |min: i32| {
        let file = std::fs::File::open("/dev/null").unwrap();
        rustix::io::fcntl_dupfd_cloexec(&file, min).unwrap()
    };
    // Two descriptors that each sit on the other's target, one already at its own
    // number (dup2(n, n)), and one on the child's stdout.
    let at_30 = open(30);
    let at_31 = open(31);
    let at_40 = open(40);
    assert_eq!(
        (at_30.as_raw_fd(), at_31.as_raw_fd(), at_40.as_raw_fd()),
        (30, 31, 40)
    );
    let (ino_30, ino_31, ino_40) = (
        crate::util::inode(&at_30),
        crate::util::inode(&at_31),
        crate::util::inode(&at_40),
    );
    let (mut out_r, out_w) = std::io::pipe().unwrap();
    let mut options = SpawnOptions::new();
    options
        .fd(31, at_30)
        .fd(30, at_31)
        .fd(40, at_40)
        .fd(1, out_w);
    for through_std in PATHS {
        let (mut child, socket) = spawn_on(&options, &child_program("report", 3), through_std);
        let r = report(&mut child, &socket);
        assert_eq!(r["fds"], "0,1,2,3,30,31,40", "std path: {through_std}");
        assert_eq!(r["ino:31"], ino_30.to_string(), "std path: {through_std}");
        assert_eq!(r["ino:30"], ino_31.to_string(), "std path: {through_std}");
        assert_eq!(r["ino:40"], ino_40.to_string(), "std path: {through_std}");
    }
    // The child's stdout was our pipe: a shell child writes to it.
    let (mut child, end) = options
        .spawn_program(Program::new("sh").args(["-c", "echo out"]))
        .unwrap();
    assert!(child.wait().unwrap().success());
    drop((options, end));
    let mut out = String::new();
    out_r.read_to_string(&mut out).unwrap();
    assert_eq!(out, "out\n");
    assert_eq!(
        open_fds(),
        before + 1,
        "only the pipe's read end is still ours"
    );
}

#[test]
fn the_end_can_be_the_childs_stdin_and_stdout() {
    watchdog(|| {
        for through_std in PATHS {
            let (ours, theirs) = sockpair::pair(Type::STREAM).unwrap();
            let mut options = SpawnOptions::new();
            options
                .child_fd(0)
                .fd(1, theirs.try_clone().unwrap())
                .convention(Convention::None);
            let mut program = Program::new("sh");
            program.args(["-c", r#"read line; echo "got $line ${SOCKPAIR_FD-none}""#]);
            let mut child = match through_std {
                true => options
                    .spawn_with_end(&mut program.to_command(), theirs)
                    .unwrap(),
                false => options.spawn_program_with_end(&program, theirs).unwrap(),
            };
            drop(options);
            (&ours).write_all(b"hello\n").unwrap();
            let mut reply = String::new();
            (&ours).read_to_string(&mut reply).unwrap();
            assert_eq!(reply, "got hello none\n", "std path: {through_std}");
            assert!(child.wait().unwrap().success());
        }
    });
}

/// Spawns the `fd-receiver` child, sends it a message with a descriptor at once, then a
/// plain one; returns its two answers.
fn send_fd_at_once(options: &SpawnOptions) -> (String, String) {
    let (mut child, socket) = options
        .spawn_program(&child_program("fd-receiver", 3))
        .unwrap();
    let mut channel: sockpair::Channel<Vec<u8>> = sockpair::Channel::new(socket).unwrap();
    let (_r, w) = std::io::pipe().unwrap();
    let first = match channel.send_with_fds(&b"with".to_vec(), &[std::os::fd::AsFd::as_fd(&w)]) {
        Ok(()) => String::from_utf8(channel.recv().unwrap().unwrap()).unwrap(),
        Err(err) => format!("send: {:?}", err.kind()),
    };
    channel.send(&b"plain".to_vec()).unwrap();
    let second = String::from_utf8(channel.recv().unwrap().unwrap()).unwrap();
    drop(channel);
    assert!(child.wait().unwrap().success());
    (first, second)
}

#[test]
fn descriptors_reach_a_fresh_child_from_the_first_message_every_time() {
    watchdog(|| {
        // Two threads, a thousand children each, so that timing varies.
        let threads: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(|| {
                    let mut options = SpawnOptions::new();
                    options.accept_fds(true);
                    let mut failures = Vec::new();
                    for _ in 0..1000 {
                        let answers = send_fd_at_once(&options);
                        if answers != ("with fds=1".into(), "plain fds=0".into()) {
                            failures.push(answers);
                        }
                    }
                    failures
                })
            })
            .collect();
        for thread in threads {
            let failures = thread.join().unwrap();
            assert!(
                failures.is_empty(),
                "{} failed: {:?}",
                failures.len(),
                &failures[..1]
            );
        }
        // The default (the socket as a new pair has it) delivers them the same way.
        assert_eq!(
            send_fd_at_once(&SpawnOptions::new()),
            ("with fds=1".into(), "plain fds=0".into())
        );
    });
}

#[test]
fn a_refusing_child_refuses_the_same_way_every_run() {
    watchdog(|| {
        let mut options = SpawnOptions::new();
        options.accept_fds(false);
        if !crate::util::kernel_has_pass_rights() {
            let err = options
                .spawn_program(&child_program("fd-receiver", 3))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
            return;
        }
        for run in 0..200 {
            assert_eq!(
                send_fd_at_once(&options),
                ("send: Fds".into(), "plain fds=0".into()),
                "run {run}"
            );
        }
    });
}

/// Whether process `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.starts_with(" Z"))
    })
}

#[test]
fn kill_on_drop_kills_and_reaps() {
    watchdog(|| {
        for through_std in PATHS {
            let (child, _socket) = spawn_on(
                SpawnOptions::new().kill_on_drop(true),
                Program::new("sleep").arg("300"),
                through_std,
            );
            let pid = child.id();
            assert!(
                running(pid),
                "std path: {through_std}: {:?}",
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
            );
            drop(child);
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "killed and reaped"
            );
            // Without it the child lives on after the drop.
            let (child, _socket) = spawn_on(
                &SpawnOptions::new(),
                Program::new("sleep").arg("300"),
                through_std,
            );
            let pid = child.id();
            drop(child);
            assert!(running(pid));
            let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
            rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap();
        }
    });
}

#[test]
fn both_paths_run_a_file_without_a_shebang_the_same_way() {
    watchdog(|| {
        let dir = std::env::temp_dir().join(format!("sockpair-noexec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("script");
        std::fs::write(&script, "echo \"script $1\" >&3\n").unwrap();
        let broken = dir.join("broken");
        std::fs::write(&broken, b"\x7fELF\x02\x01\x01garbage").unwrap();
        for file in [&script, &broken] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut outcomes = Vec::new();
        for through_std in PATHS {
            for file in [&script, &broken] {
                let mut program = Program::new(file);
                program.arg("arg");
                let options = SpawnOptions::new();
                let (mut child, mut socket) = match through_std {
                    true => options
                        .spawn(program.to_command().stderr(Stdio::null()))
                        .unwrap(),
                    false => options.spawn_program(&program).unwrap(),
                };
                let mut said = String::new();
                socket.read_to_string(&mut said).unwrap();
                let status = child.wait().unwrap();
                outcomes.push((said, status.code()));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            outcomes[0],
            ("script arg\n".into(), Some(0)),
            "run by /bin/sh"
        );
        assert_ne!(outcomes[1].1, Some(0), "a broken ELF fails");
        assert_eq!(outcomes[..2], outcomes[2..], "both paths alike");
    });
}

/// Issue 23: a program name holding a NUL byte (or another control character) is shown
/// escaped in the spawn error's message, never raw.
#[test]
fn control_characters_in_a_program_name_are_escaped_in_the_message() {
    for name in ["tr\0ue", "bad\nname", "esc\u{1b}[31m"] {
        let program_error = SpawnOptions::new()
            .spawn_program(&Program::new(name))
            .unwrap_err();
        let command_error = SpawnOptions::new()
            .spawn(&mut Command::new(name))
            .unwrap_err();
        for (err, exact) in [(program_error, true), (command_error, !name.contains('\0'))] {
            let message = err.to_string();
            assert!(
                !message.chars().any(char::is_control),
                "{name:?}: {message:?}"
            );
            // std's `Command` keeps no name holding a NUL ("<string-with-nul>").
            if exact {
                let escaped: String = name.chars().flat_map(char::escape_default).collect();
                assert!(
                    message.starts_with(&format!("spawn '{escaped}': ")),
                    "{message:?}"
                );
                assert_eq!(err.program(), std::ffi::OsStr::new(name));
            }
        }
    }
}
