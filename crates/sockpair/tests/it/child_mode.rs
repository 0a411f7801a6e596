//! The test binary re-executed as a child: when `SOCKPAIR_IT_CHILD` names a mode, the
//! mode runs before libtest's `main` and the process exits with its result.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs::OFlags;
use rustix::io::FdFlags;
use sockpair::Socket;

/// Names the mode; unset in the test process itself.
pub const MODE: &str = "SOCKPAIR_IT_CHILD";
/// The descriptor number the child's end is expected at.
pub const FD: &str = "SOCKPAIR_IT_FD";

sockpair::__run_before_main!(run_child_mode);

fn run_child_mode() {
    let Some(mode) = std::env::var(MODE).ok() else {
        return;
    };
    let code = match mode.as_str() {
        "report" => report(),
        "echo" => echo(),
        "flood" => flood(),
        "inherit" => inherit(),
        "fd-receiver" => fd_receiver(),
        #[cfg(feature = "worker")]
        "worker-parent" => worker_parent(),
        #[cfg(feature = "worker")]
        "worker-panics" => worker_panics(),
        #[cfg(feature = "worker")]
        "worker-fork" => worker_fork(),
        other => {
            eprintln!("unknown child mode {other}");
            3
        }
    };
    std::process::exit(code);
}

/// The end at `$SOCKPAIR_IT_FD`, borrowed.
fn expected_end() -> BorrowedFd<'static> {
    let fd: i32 = std::env::var(FD).unwrap().parse().unwrap();
    // SAFETY: the parent put our end at this number; this process never closes it.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Waits for one byte from the parent, then sends back what this process sees: its
/// open descriptors, the flags and type of its end, its pid, its cwd, its arguments and
/// the variables of every convention. One `key=value` per line.
fn report() -> i32 {
    let end = expected_end();
    let mut go = [0; 1];
    rustix::net::recv(end, &mut go, rustix::net::RecvFlags::empty()).unwrap();
    let fds: Vec<String> = crate::util::fd_numbers()
        .iter()
        .map(i32::to_string)
        .collect();
    let mut text = format!("fds={}\n", fds.join(","));
    text += &format!(
        "cloexec={}\n",
        rustix::io::fcntl_getfd(end)
            .unwrap()
            .contains(FdFlags::CLOEXEC)
    );
    text += &format!(
        "nonblock={}\n",
        rustix::fs::fcntl_getfl(end)
            .unwrap()
            .contains(OFlags::NONBLOCK)
    );
    text += &format!(
        "type={}\n",
        rustix::net::sockopt::socket_type(end).unwrap().as_raw()
    );
    text += &format!("pid={}\n", std::process::id());
    text += &format!("pgid={}\n", rustix::process::getpgrp().as_raw_pid());
    text += &format!("uid={}\n", rustix::process::getuid().as_raw());
    text += &format!("gid={}\n", rustix::process::getgid().as_raw());
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    text += &format!(
        "nofile={}\n",
        nofile.map_or("unlimited".into(), |n| n.to_string())
    );
    let mut keys: Vec<String> = std::env::vars().map(|(key, _)| key).collect();
    keys.sort();
    text += &format!("envkeys={}\n", keys.join(","));
    for fd in crate::util::fd_numbers() {
        // SAFETY: only asking fstat about a number that is open in this process.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        if let Ok(stat) = rustix::fs::fstat(borrowed) {
            text += &format!("ino:{fd}={}\n", stat.st_ino);
        }
    }
    text += &format!("cwd={}\n", std::env::current_dir().unwrap().display());
    text += &format!(
        "args={}\n",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    for (key, value) in std::env::vars() {
        let interesting = ["SOCKPAIR_", "NODE_", "LISTEN_", "WAYLAND_", "IT_"];
        if interesting.iter().any(|prefix| key.starts_with(prefix)) && key != MODE && key != FD {
            text += &format!("env:{key}={value}\n");
        }
    }
    rustix::net::send(end, text.as_bytes(), rustix::net::SendFlags::empty()).unwrap();
    0
}

/// Takes the end from `$SOCKPAIR_FD` and echoes everything back until EOF.
fn echo() -> i32 {
    // SAFETY: before main, single-threaded; the descriptor is ours alone.
    let mut socket = unsafe { Socket::from_inherited("SOCKPAIR_FD") }.unwrap();
    let mut buf = [0; 65536];
    loop {
        match socket.read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => socket.write_all(&buf[..n]).unwrap(),
            Err(err) => panic!("echo: {err}"),
        }
    }
}

/// Writes to its end as fast as it can, forever (until killed or the peer closes).
fn flood() -> i32 {
    // SAFETY: as in `echo`.
    let socket = unsafe { Socket::from_inherited("SOCKPAIR_FD") }.unwrap();
    let chunk = [b'x'; 65536];
    while (&socket).write_all(&chunk).is_ok() {}
    0
}

/// `Socket::from_inherited` on each kind of bad input, then on the real end; then a
/// grandchild, to show it inherits neither the variable nor the descriptor. Sends one
/// line per case over the end.
fn inherit() -> i32 {
    let fd = expected_end().as_raw_fd();
    let mut lines = Vec::new();
    let mut attempt = |label: &str, value: Option<&str>| {
        // SAFETY: before main, single-threaded.
        unsafe {
            match value {
                Some(value) => std::env::set_var("IT_VAR", value),
                None => std::env::remove_var("IT_VAR"),
            }
        }
        // SAFETY: as above; on error nothing is taken.
        match unsafe { Socket::from_inherited("IT_VAR") } {
            Ok(socket) => {
                lines.push(format!("{label}: ok"));
                Some(socket)
            }
            Err(err) => {
                lines.push(format!("{label}: {:?}: {err}", err.kind()));
                None
            }
        }
    };
    attempt("missing", None);
    attempt("text", Some("three"));
    attempt("negative", Some("-1"));
    attempt("closed", Some("999"));
    let file = std::fs::File::open("/dev/null").unwrap();
    attempt("not a socket", Some(&file.as_raw_fd().to_string()));
    let socket = attempt("real", Some(&fd.to_string())).expect("the real end is accepted");
    let flags = rustix::io::fcntl_getfd(&socket).unwrap();
    lines.push(format!(
        "cloexec after: {}",
        flags.contains(FdFlags::CLOEXEC)
    ));
    lines.push(format!("var after: {:?}", std::env::var("IT_VAR").ok()));
    let grandchild = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(r#"echo "${{IT_VAR-unset}}"; if [ -e /proc/$$/fd/{fd} ]; then echo open; else echo closed; fi"#))
        .output()
        .unwrap();
    lines.push(format!(
        "grandchild: {}",
        String::from_utf8_lossy(&grandchild.stdout)
            .replace('\n', " ")
            .trim()
    ));
    (&socket)
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    0
}

/// A `Channel` on the end from `$SOCKPAIR_FD`, built at once: answers each message with
/// `<payload> fds=<n>`, or an error with `error <kind>`, until EOF.
fn fd_receiver() -> i32 {
    // SAFETY: before main, single-threaded; the descriptor is ours alone.
    let socket = unsafe { Socket::from_inherited("SOCKPAIR_FD") }.unwrap();
    let mut channel: sockpair::Channel<Vec<u8>> = sockpair::Channel::new(socket).unwrap();
    loop {
        let mut fds = Vec::new();
        let reply = match channel.recv_with_fds(&mut fds) {
            Ok(None) => return 0,
            Ok(Some(payload)) => {
                let mut reply = payload;
                reply.extend_from_slice(format!(" fds={}", fds.len()).as_bytes());
                reply
            }
            Err(err) => format!("error {:?}", err.kind()).into_bytes(),
        };
        if channel.send(&reply).is_err() {
            return 1;
        }
    }
}

/// A parent of a worker that is about to die: starts a worker that prints its pid on
/// the stdout they share once it runs, then waits to be killed.
#[cfg(feature = "worker")]
fn worker_parent() -> i32 {
    // SAFETY: this process runs no other thread yet (the mode runs before main).
    unsafe { std::env::remove_var(MODE) };
    sockpair::worker::init(); // whichever pre-main hook the loader runs first
    // One worker forked by the fork server, one exec'd: each prints its pid and its
    // parent's (the server's, or this process's).
    let handles: Vec<_> = [false, true]
        .into_iter()
        .map(|exec| {
            sockpair::worker::Options::new()
                .exec(exec)
                .spawn(
                    |ms: u64| {
                        println!(
                            "{} {}",
                            std::process::id(),
                            std::os::unix::process::parent_id()
                        );
                        std::thread::sleep(std::time::Duration::from_millis(ms))
                    },
                    60_000,
                )
                .unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(handles);
    0
}

/// Workers that panic, on their own thread and on one they start: each error is printed
/// on stdout (`Display`), and what the workers print is left on the shared stderr.
#[cfg(feature = "worker")]
fn worker_panics() -> i32 {
    // SAFETY: this process runs no other thread yet (the mode runs before main).
    unsafe { std::env::remove_var(MODE) };
    sockpair::worker::init();
    let own = sockpair::worker::spawn(|n: u32| -> u32 { panic!("boom {n}") }, 7).unwrap();
    println!("{}", own.join().unwrap_err());
    let helper = sockpair::worker::spawn(
        |_: ()| -> bool { std::thread::spawn(|| panic!("helper")).join().is_err() },
        (),
    )
    .unwrap();
    println!("helper panicked: {}", helper.join().unwrap());
    0
}

/// A single-threaded process that spawns a worker (starting a fork server), then forks:
/// the child spawns through a server of its own (the parent's belongs to the parent),
/// and afterwards the parent's still serves it. Prints one line per spawn; exit 0.
#[cfg(feature = "worker")]
fn worker_fork() -> i32 {
    // SAFETY: this process runs no other thread yet (the mode runs before main).
    unsafe { std::env::remove_var(MODE) };
    sockpair::worker::init();
    let double = |x: i64| 2 * x;
    let parent_of = |_: ()| std::os::unix::process::parent_id();
    let before = sockpair::worker::spawn(parent_of, ())
        .unwrap()
        .join()
        .unwrap();
    println!("parent server {before}");
    // SAFETY: this process has one thread (no worker call starts one), so the child may
    // do anything the parent could.
    match unsafe { sockpair::fork(sockpair::Type::STREAM) }.unwrap() {
        sockpair::Fork::Child { socket } => {
            let answer = sockpair::worker::spawn(double, 21).unwrap().join().unwrap();
            let server = sockpair::worker::spawn(parent_of, ())
                .unwrap()
                .join()
                .unwrap();
            println!("child answer {answer} server {server}");
            drop(socket);
            0
        }
        sockpair::Fork::Parent { mut child, socket } => {
            let mut buf = [0; 1];
            let _ = socket.recv(&mut buf); // until the child is done
            assert!(child.wait().unwrap().success());
            let answer = sockpair::worker::spawn(double, 4).unwrap().join().unwrap();
            let after = sockpair::worker::spawn(parent_of, ())
                .unwrap()
                .join()
                .unwrap();
            println!("parent answer {answer} server {after}");
            0
        }
    }
}
