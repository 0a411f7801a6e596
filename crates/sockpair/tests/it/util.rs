//! Helpers shared by the integration tests.

use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rustix::fs::OFlags;
use rustix::io::FdFlags;

/// How long any blocking test may take before it is declared hung.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Runs `f` on its own thread and fails the test if it does not finish within [`LIMIT`]
/// (a hang is a failure, not a stuck CI run). Panics inside `f` propagate.
pub fn watchdog<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let result = f();
        let _ = done_tx.send(());
        result
    });
    match done_rx.recv_timeout(LIMIT) {
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test still blocked after {LIMIT:?}"),
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
    }
}

/// Runs the `#[ignore]`d test `name` (its path in this binary, e.g. `pair::errors_inner`)
/// alone in a fresh copy of this test binary, and asserts that it passed.
///
/// For tests that count the process's descriptors or change process-wide state (signal
/// dispositions): other tests, running on other threads, would disturb both.
pub fn in_fresh_process(name: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            name,
            "--test-threads=1",
            "--nocapture",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("re-run the test binary");
    let output = watchdog(move || child.wait_with_output().expect("wait for the test process"));
    let (status, out, err) = (
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        status.success() && out.contains("test result: ok. 1 passed"),
        "{name} in a fresh process: {status}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
}

/// The number of descriptors this process has open.
pub fn open_fds() -> usize {
    fd_numbers().len()
}

/// The descriptors this process has open, in order.
pub fn fd_numbers() -> Vec<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    // The listing's own descriptor is closed again by now.
    let mut open: Vec<i32> = listed
        .into_iter()
        .filter(|&fd| fd_flags(fd).is_some())
        .collect();
    open.sort();
    open
}

/// The descriptor flags of `fd` (`F_GETFD`), or `None` if it is not open.
pub fn fd_flags(fd: i32) -> Option<FdFlags> {
    // SAFETY: only asking fcntl about a number; a closed one gives EBADF.
    rustix::io::fcntl_getfd(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).ok()
}

/// Whether `fd` is close-on-exec and whether it is non-blocking, read back with `fcntl`.
pub fn cloexec_nonblock(fd: impl AsFd) -> (bool, bool) {
    let fd_flags = rustix::io::fcntl_getfd(&fd).unwrap();
    let fl_flags = rustix::fs::fcntl_getfl(&fd).unwrap();
    (
        fd_flags.contains(FdFlags::CLOEXEC),
        fl_flags.contains(OFlags::NONBLOCK),
    )
}

/// Puts `SIGPIPE` back to its default action (the Rust runtime ignores it at start-up),
/// so that a write that raised it would kill this process.
pub fn default_sigpipe() {
    // SAFETY: resetting a signal to SIG_DFL installs no handler and touches no memory;
    // only ever called in a fresh single-test process.
    let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(previous, libc::SIG_ERR);
}

/// Whether this process currently ignores `SIGPIPE`, from `/proc/self/status`.
pub fn sigpipe_ignored() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .map(|hex| u64::from_str_radix(hex.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (libc::SIGPIPE - 1)) != 0
}

/// The three types a pair can have.
pub const TYPES: [sockpair::Type; 3] = [
    sockpair::Type::STREAM,
    sockpair::Type::SEQPACKET,
    sockpair::Type::DGRAM,
];

/// The inode of a descriptor, to tell which file a received descriptor refers to.
pub fn inode(fd: impl AsFd) -> u64 {
    rustix::fs::fstat(fd).unwrap().st_ino
}

/// The address `/proc/net/unix` lists for the socket `fd` (`None`: no path, no abstract
/// name). Panics if the socket is not listed.
pub fn listed_address(fd: impl AsFd) -> Option<String> {
    let inode = inode(fd).to_string();
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    // Columns: Num RefCount Protocol Flags Type St Inode [Path]
    let row = table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.get(6) == Some(&inode.as_str()))
        .expect("the socket is listed in /proc/net/unix");
    row.get(7).map(|address| address.to_string())
}

/// Whether this kernel can refuse descriptors on a socket (`SO_PASSRIGHTS`, Linux 6.16).
pub fn kernel_has_pass_rights() -> bool {
    let (a, _b) = sockpair::pair(sockpair::Type::STREAM).unwrap();
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are writable and sized for an int option.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&a),
            libc::SOL_SOCKET,
            83, // SO_PASSRIGHTS
            (&raw mut value).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// `setsockopt(fd, SOL_SOCKET, name, value)` for an int option; panics on failure.
pub fn set_socket_option(fd: impl AsFd, name: libc::c_int, value: libc::c_int) {
    // SAFETY: `value` is a readable int of the size given; the fd is borrowed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()),
            libc::SOL_SOCKET,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

/// Whether workers come from the fork server here: it needs pidfds (Linux 5.3), which
/// the old-kernel run of CI takes away (then every worker is exec'd).
#[cfg(feature = "worker")]
pub fn fork_server_here() -> bool {
    rustix::process::pidfd_open(
        rustix::process::getpid(),
        rustix::process::PidfdFlags::empty(),
    )
    .is_ok()
}
