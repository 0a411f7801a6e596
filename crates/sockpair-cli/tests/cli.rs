//! The `sockpair` binary, run as users run it.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long one run may take before the test calls it hung and kills it.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `command` to completion with its output captured, killing it after [`LIMIT`].
fn run(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(LIMIT) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} still running after {LIMIT:?}; killed");
        }
    }
}

fn sockpair(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_sockpair")).args(args))
}

const DEMO_OUTPUT: &str = "Child received: Hello from parent\nParent received: Hello from child\n";

#[test]
fn demo_prints_exactly_the_two_lines_in_order_for_every_type() {
    for ty in [None, Some("stream"), Some("seqpacket"), Some("dgram")] {
        let args: Vec<&str> = match ty {
            Some(ty) => vec!["demo", "--type", ty],
            None => vec!["demo"],
        };
        for run in 0..25 {
            let out = sockpair(&args);
            assert!(out.status.success(), "{args:?} run {run}: {out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                DEMO_OUTPUT,
                "{args:?} run {run}"
            );
            assert!(
                out.stderr.is_empty(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn demo_output_through_a_pipe_into_another_program_is_the_same() {
    // stdout is a pipe here and the child writes it directly: no buffering reorders lines.
    let out = run(Command::new("sh")
        .arg("-c")
        .arg(format!("'{}' demo | cat", env!("CARGO_BIN_EXE_sockpair"))));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), DEMO_OUTPUT);
}

#[test]
fn an_unknown_type_is_one_clear_line_and_exit_2() {
    let out = sockpair(&["demo", "--type", "raw"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("sockpair: invalid value 'raw' for '--type <TYPE>'"),
        "{err}"
    );
    assert!(err.contains("stream, seqpacket, dgram"), "{err}");
}

#[test]
fn an_unknown_command_is_exit_2() {
    let out = sockpair(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("sockpair: "));
}

#[test]
fn help_lists_the_demo() {
    let out = sockpair(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo"));
}
