//! The `sockpair` binary, run as users run it.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::LIMIT;

/// Runs `command` to completion with its output captured, killing it after [`LIMIT`].
fn run(command: &mut Command) -> Output {
    run_with_input(command, b"")
}

/// [`run`], with `input` as its stdin (then EOF).
fn run_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    common::wait_limited(child, &format!("{command:?}"))
}

fn sockpair(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_sockpair")).args(args))
}

fn sockpair_with_input(args: &[&str], input: &[u8]) -> Output {
    run_with_input(
        Command::new(env!("CARGO_BIN_EXE_sockpair")).args(args),
        input,
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a usage error as clap renders it: exit status 2, its first line starting as
/// given, then clap's own `Usage:` or tip lines.
fn assert_clap_error(out: &Output, starts: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.starts_with(starts), "{err}");
    assert!(
        err.lines().any(|line| line.starts_with("Usage:"))
            || err.lines().any(|line| line.contains("try '--help'")),
        "clap's layout kept: {err}"
    );
}

/// Asserts our own error: exit status 2 and one line on stderr starting as given.
fn assert_usage_error(out: &Output, starts: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(starts), "{err}");
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
    assert!(
        err.starts_with("error: invalid value 'raw' for '--type <TYPE>'"),
        "{err}"
    );
    assert!(err.contains("stream, seqpacket, dgram"), "{err}");
    assert!(err.contains("For more information, try '--help'."), "{err}");
}

#[test]
fn an_unknown_command_is_exit_2() {
    let out = sockpair(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
    assert!(err.contains("\nUsage: sockpair <COMMAND>\n"), "{err}");
}

#[test]
fn no_arguments_print_the_usage_on_separate_lines() {
    let out = sockpair(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.contains(&"Usage: sockpair <COMMAND>"), "{err}");
    assert!(
        lines
            .iter()
            .any(|line| line.trim_start().starts_with("demo ")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.trim_start().starts_with("run ")),
        "{err}"
    );
    assert!(lines.len() > 8, "{err}");
    assert!(!err.to_lowercase().contains("seed"), "{err}");
}

#[test]
fn help_works_for_every_command_and_for_help_itself() {
    for args in [
        &["help"][..],
        &["help", "--help"],
        &["help", "run"],
        &["run", "--help"],
        &["demo", "--help"],
    ] {
        let out = sockpair(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        let text = stdout(&out);
        assert!(text.contains("Usage: sockpair"), "{args:?}: {text}");
        assert!(!text.to_lowercase().contains("seed"), "{args:?}: {text}");
    }
    assert!(stdout(&sockpair(&["help", "demo"])).contains("TLPI"));
    assert_clap_error(
        &sockpair(&["help", "nothing"]),
        "error: no such command: 'nothing'",
    );
}

#[test]
fn help_lists_the_demo() {
    let out = sockpair(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo"));
}

#[test]
fn run_bridges_stdin_and_stdout_through_the_childs_end() {
    for ty in ["stream", "seqpacket", "dgram"] {
        let out = sockpair_with_input(
            &["run", "--type", ty, "--", "sh", "-c", "head -n 2 <&3 >&3"],
            b"one\ntwo\n",
        );
        assert!(out.status.success(), "{ty}: {out:?}");
        assert_eq!(stdout(&out), "one\ntwo\n", "{ty}");
    }
}

#[test]
fn run_half_closes_at_stdin_eof_and_keeps_reading() {
    let out = sockpair_with_input(
        &[
            "run",
            "--",
            "sh",
            "-c",
            "cat <&3 >/dev/null; echo after-eof >&3",
        ],
        b"ignored\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "after-eof\n");
}

#[test]
fn run_carries_a_mebibyte_each_way() {
    let input: Vec<u8> = (0..1 << 20).map(|i: u32| b'a' + (i % 26) as u8).collect();
    let out = sockpair_with_input(&["run", "--", "sh", "-c", "cat <&3 >&3"], &input);
    assert!(out.status.success());
    assert!(out.stdout == input, "{} bytes back", out.stdout.len());
}

#[test]
fn run_puts_the_end_at_the_chosen_fd_and_names_it() {
    let out = sockpair(&[
        "run",
        "--fd",
        "7",
        "--env",
        "MY_FD",
        "--",
        "sh",
        "-c",
        r#"echo "$MY_FD ${SOCKPAIR_FD-unset}" >&7"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "7 unset\n");
}

#[test]
fn run_systemd_sets_listen_variables_with_the_childs_pid() {
    let script =
        r#"[ "$LISTEN_PID" = "$$" ] && ok=pid-ok; echo "$LISTEN_FDS $LISTEN_FDNAMES $ok" >&3"#;
    let out = sockpair(&["run", "--systemd", "--", "sh", "-c", script]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "1 sockpair pid-ok\n");
}

#[test]
fn run_exits_with_the_childs_status() {
    assert_eq!(
        sockpair(&["run", "--", "sh", "-c", "exit 5"]).status.code(),
        Some(5)
    );
    assert_eq!(
        sockpair(&["run", "--", "sh", "-c", "kill -9 $$"])
            .status
            .code(),
        Some(128 + 9)
    );
    assert_eq!(sockpair(&["run", "--", "true"]).status.code(), Some(0));
}

#[test]
fn run_refuses_bad_input_with_one_line_and_exit_2() {
    assert_usage_error(
        &sockpair(&["run", "--", "sockpair-no-such-program"]),
        "sockpair: spawn 'sockpair-no-such-program': No such file or directory",
    );
    assert_clap_error(
        &sockpair(&["run", "--fd", "2", "--", "true"]),
        "error: invalid value '2' for '--fd <N>'",
    );
    assert_clap_error(
        &sockpair(&["run", "--fd", "three", "--", "true"]),
        "error: invalid value 'three'",
    );
    assert_clap_error(
        &sockpair(&["run", "--type", "raw", "--", "true"]),
        "error: invalid value 'raw'",
    );
    assert_clap_error(
        &sockpair(&["run"]),
        "error: the following required arguments were not provided",
    );
    // Option conflicts are usage errors at parse time, naming both options.
    assert_clap_error(
        &sockpair(&["run", "--systemd", "--fd", "5", "--", "true"]),
        "error: the argument '--systemd' cannot be used with '--fd <N>'",
    );
    assert_clap_error(
        &sockpair(&["run", "--systemd", "--env", "FOO", "--", "true"]),
        "error: the argument '--systemd' cannot be used with '--env <NAME>'",
    );
    // Values said in CLI terms: no Rust Debug text, no `-- -3` tip for a negative value.
    for (args, starts) in [
        (
            &["run", "--env", "", "--", "true"][..],
            "error: invalid value '' for '--env <NAME>': a variable name must be non-empty",
        ),
        (
            &["run", "--env", "A=B", "--", "true"],
            "error: invalid value 'A=B' for '--env <NAME>'",
        ),
        (
            &["run", "--fd", "-3", "--", "true"],
            "error: invalid value '-3' for '--fd <N>': -3 is not a descriptor",
        ),
    ] {
        let out = sockpair(args);
        assert_clap_error(&out, starts);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("Convention::") && !err.contains("-- -3"),
            "{err}"
        );
    }
}

#[test]
fn run_leaves_no_child_behind_when_its_stdout_closes() {
    let dir = std::env::temp_dir().join(format!("sockpair-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let script = format!(
        "'{}' run -- sh -c 'echo $$ > {}; exec yes >&3' | head -c 10 >/dev/null",
        env!("CARGO_BIN_EXE_sockpair"),
        pidfile.display()
    );
    let out = run(Command::new("sh").arg("-c").arg(&script));
    assert!(out.status.success(), "{out:?}");
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc_dir = format!("/proc/{}", pid.trim());
    assert!(
        !std::path::Path::new(&proc_dir).exists(),
        "the child {proc_dir} still exists"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pipe_connects_two_commands_both_ways() {
    for ty in ["stream", "seqpacket"] {
        let out = sockpair(&[
            "pipe",
            "--type",
            ty,
            // head reads with a large buffer: on seqpacket, the shell's byte-at-a-time
            // `read` would lose the rest of each record.
            "echo ping; head -n 1 | sed 's/^/A got /' >&2",
            "head -n 1 | sed 's/^/B got /' >&2; echo pong",
        ]);
        assert!(out.status.success(), "{ty}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("B got ping") && err.contains("A got pong"),
            "{ty}: stderr passes through: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn pipe_says_which_command_failed() {
    let out = sockpair(&["pipe", "cat", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err, "sockpair: command B 'exit 3' failed: exit status 3\n");

    // Both failed: B's status (the last command's, as bash's pipefail), both said.
    let out = sockpair(&["pipe", "exit 4", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "the last failure's status");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sockpair: command B 'exit 5' failed: exit status 5\n\
         sockpair: command A 'exit 4' failed: exit status 4\n"
    );
    let out = sockpair(&["pipe", "exit 4", "true"]);
    assert_eq!(out.status.code(), Some(4), "A's, when only A failed");
    let out = sockpair(&["pipe", "kill -9 $$", "true"]);
    assert_eq!(out.status.code(), Some(137));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "sockpair: command A 'kill -9 $$' failed: killed by signal 9\n"
    );
}

#[test]
fn pipe_refuses_bad_input() {
    assert_clap_error(
        &sockpair(&["pipe", "true"]),
        "error: the following required arguments were not provided",
    );
    assert_usage_error(
        &sockpair(&["pipe", "true", " "]),
        "sockpair: command B is empty",
    );
    assert_clap_error(
        &sockpair(&["pipe", "--type", "x", "true", "true"]),
        "error: invalid value 'x'",
    );
}

#[test]
fn run_lines_and_length_framing_carry_one_message_per_line() {
    for ty in ["stream", "seqpacket", "dgram"] {
        // On records each line is one record; one `dd` read takes exactly one.
        let script = "for i in 1 2; do dd bs=65536 count=1 status=none <&3 | tr a-z A-Z >&3; done";
        let script = if ty == "stream" {
            "tr a-z A-Z <&3 >&3"
        } else {
            script
        };
        let out = sockpair_with_input(
            &[
                "run",
                "--type",
                ty,
                "--framing",
                "lines",
                "--",
                "sh",
                "-c",
                script,
            ],
            b"one\ntwo\n",
        );
        assert!(out.status.success(), "{ty}: {out:?}");
        assert_eq!(stdout(&out), "ONE\nTWO\n", "{ty}");
    }
}

/// A Python child on `multiprocessing.connection`: answers each message upper-cased.
const PYTHON_UPPER: &str = r#"
import os
from multiprocessing.connection import Connection
c = Connection(int(os.environ["SOCKPAIR_FD"]))
while True:
    try:
        m = c.recv_bytes()
    except EOFError:
        break
    c.send_bytes(m.upper())
"#;

#[test]
fn run_length_framing_speaks_pythons_connection() {
    let out = sockpair_with_input(
        &[
            "run",
            "--framing",
            "length",
            "--",
            "python3",
            "-c",
            PYTHON_UPPER,
        ],
        b"one\n\nthree",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout(&out),
        "ONE\n\nTHREE\n",
        "an empty line is an empty message"
    );
}

/// A Node child that logs each message on stderr and answers `{"got": message}`.
const NODE_CHILD: &str = r#"
process.on('message', (m) => { console.error('child got ' + JSON.stringify(m)); process.send({ got: m }); });
"#;

#[test]
fn run_node_prints_what_the_child_sends_as_json_lines() {
    let out = sockpair_with_input(
        &["run", "--node", "--", "node", "-e", NODE_CHILD],
        b"{\"n\":1}\n[2]\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "{\"got\":{\"n\":1}}\n{\"got\":[2]}\n");
}

#[test]
fn run_node_refuses_a_bad_line_by_number_and_sends_nothing_of_it() {
    for (input, why) in [
        (&b"{\"n\":1}\n\n[3]\n"[..], "empty line"),
        (b"{\"n\":1}\n{oops\n[3]\n", "invalid JSON"),
    ] {
        let out = sockpair_with_input(&["run", "--node", "--", "node", "-e", NODE_CHILD], input);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = err
            .lines()
            .filter(|line| line.starts_with("sockpair:"))
            .collect();
        assert_eq!(ours.len(), 1, "{err}");
        assert!(
            ours[0].starts_with(&format!("sockpair: stdin line 2: {why}")),
            "{err}"
        );
        assert!(
            !err.contains("child got [3]") && !err.contains("oops"),
            "{err}"
        );
    }
}

#[test]
fn run_node_needs_a_stream() {
    for ty in ["seqpacket", "dgram"] {
        let out = sockpair(&["run", "--node", "--type", ty, "--", "node", "-e", ""]);
        assert_clap_error(
            &out,
            &format!(
                "error: --node needs a stream pair (Node's IPC channel is a byte stream), not --type {ty}"
            ),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Usage: sockpair run [OPTIONS] -- PROGRAM [ARGS]..."),
            "{err}"
        );
        assert!(!err.contains("Type::"), "{err}");
    }
    assert_clap_error(
        &sockpair(&["run", "--node", "--framing", "length", "--", "true"]),
        "error: the argument",
    );
}

/// The bench tests look for leftover children of any bench run: one at a time.
static BENCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Whether any benchmark child of this binary is still running.
fn bench_children_alive() -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| std::fs::read(entry.ok()?.path().join("cmdline")).ok())
        .any(|cmdline| {
            let text = String::from_utf8_lossy(&cmdline);
            text.contains(env!("CARGO_BIN_EXE_sockpair")) && text.contains("__bench-child")
        })
}

#[test]
fn bench_prints_every_row_with_sane_values_and_leaves_no_child() {
    let _one_at_a_time = BENCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dir = std::env::temp_dir().join(format!("sockpair-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plot = dir.join("chart.svg");

    // The table, and a chart.
    let out = sockpair(&[
        "bench",
        "--duration",
        "0.3",
        "--size",
        "1",
        "--size",
        "4096",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let table = stdout(&out);
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .filter(|line| !line.starts_with('#'))
        .collect();
    assert_eq!(rows.len(), 16, "{table}");
    let impls = [
        "libc",
        "libc-framed",
        "socket",
        "channel",
        "channel-unbatched",
        "async-channel",
        "tokio-framed",
        "pipe",
    ];
    for (row, (size, imp)) in rows
        .iter()
        .zip([1, 4096].iter().flat_map(|s| impls.map(move |i| (s, i))))
    {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            (cols[0], cols[1], cols[2]),
            ("stream", size.to_string().as_str(), imp),
            "{row}"
        );
        assert!(row.contains("µs") && row.contains("x"), "{row}");
        assert!(!row.contains("NaN") && !row.contains("inf"), "{row}");
    }
    assert!(
        rows[0].contains("1.000x"),
        "libc is its own baseline: {}",
        rows[0]
    );
    // Pinned by default, and the table says so, with what its ratio columns mean.
    assert!(
        table.contains("# parent and child pinned to CPU"),
        "{table}"
    );
    assert!(table.contains("lower is better") && table.contains("higher is better"));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("polyline")
    );
    // Lines that overlap stay apart: each has its own dash pattern, and notes say how
    // the numbers were taken.
    let dashes: std::collections::HashSet<&str> = svg
        .split("stroke-dasharray=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(dashes.len(), 8, "{dashes:?}");
    assert!(svg.contains("pinned to CPU") && svg.contains("lower is better"));
    for imp in impls {
        assert!(
            svg.contains(&format!(">{imp}</text>")),
            "legend names {imp}"
        );
    }
    // The shared row, at sizes from 1 MiB only (streams: a record holds about 208 KiB).
    let out = sockpair(&[
        "bench",
        "--duration",
        "0.3",
        "--size",
        "4096",
        "--size",
        "1048576",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let shared: Vec<&serde_json::Value> =
        rows.iter().filter(|row| row["impl"] == "shared").collect();
    assert_eq!(shared.len(), 1, "one shared row, at 1 MiB only");
    assert_eq!(shared[0]["size"], 1048576);
    let rtt = shared[0]["rtt_ns_p50"].as_f64().unwrap();
    assert!(rtt > 0.0 && rtt.is_finite(), "{rtt}");
    assert!(!bench_children_alive());

    // JSON, on a seqpacket pair.
    let out = sockpair(&[
        "bench",
        "--type",
        "seqpacket",
        "--duration",
        "0.3",
        "--size",
        "64",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("one JSON array");
    assert_eq!(
        rows.len(),
        7,
        "no tokio-framed row: tokio's UnixStream is a stream"
    );
    let impls: Vec<&str> = rows
        .iter()
        .map(|row| row["impl"].as_str().unwrap())
        .collect();
    assert_eq!(
        impls,
        [
            "libc",
            "libc-framed",
            "socket",
            "channel",
            "channel-unbatched",
            "async-channel",
            "pipe"
        ]
    );
    for row in &rows {
        assert_eq!(row["type"], "seqpacket");
        assert_eq!(row["size"], 64);
        let p50 = row["rtt_ns_p50"].as_u64().unwrap();
        let p99 = row["rtt_ns_p99"].as_u64().unwrap();
        assert!(p50 > 0 && p99 >= p50, "{row}");
        assert!(row["throughput_bytes_per_s"].as_u64().unwrap() > 0, "{row}");
        let batched = ["channel", "async-channel"].contains(&row["impl"].as_str().unwrap());
        assert_eq!(row["burst_batched"], batched, "{row}");
    }
    assert!(!bench_children_alive());

    // --no-pin runs unpinned, and says so.
    let out = sockpair(&["bench", "--no-pin", "--duration", "0.2", "--size", "64"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("UNPINNED"), "{}", stdout(&out));
    assert!(!bench_children_alive());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_refuses_bad_input_before_starting_a_child() {
    let _one_at_a_time = BENCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    assert_clap_error(
        &sockpair(&["bench", "--type", "raw"]),
        "error: invalid value 'raw'",
    );
    assert_clap_error(
        &sockpair(&["bench", "--size", "0"]),
        "error: invalid value '0' for '--size <BYTES>'",
    );
    assert_clap_error(
        &sockpair(&["bench", "--size", "2000000000"]),
        "error: invalid value '2000000000'",
    );
    assert_usage_error(
        &sockpair(&["bench", "--type", "dgram", "--size", "100000"]),
        "sockpair: sizes above 65536 bytes need --type stream",
    );
    assert_clap_error(
        &sockpair(&["bench", "--duration", "0"]),
        "error: invalid value '0' for '--duration <SECS>': a duration is more than 0",
    );
    // A negative number is a value said wrong, not an option (no `-- -1` tip).
    let out = sockpair(&["bench", "--duration", "-1"]);
    assert_clap_error(
        &out,
        "error: invalid value '-1' for '--duration <SECS>': a duration is more than 0",
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("-- -1"));
    assert_clap_error(
        &sockpair(&["bench", "--size", "-64"]),
        "error: invalid value '-64' for '--size <BYTES>': a message size is 1 to",
    );
    // The chart is SVG: a name it would not honour is refused before anything runs.
    assert_clap_error(
        &sockpair(&["bench", "--plot", "chart.png"]),
        "error: invalid value 'chart.png' for '--plot <FILE.svg>': the chart is SVG",
    );
    assert_usage_error(
        &sockpair(&["bench", "--plot", "/no/such/dir/chart.svg"]),
        "sockpair: create /no/such/dir/chart.svg",
    );
    assert!(!bench_children_alive());
}

/// The processes below `root`, from `/proc/*/stat`, with whether each is a zombie.
fn descendants(root: u32) -> Vec<(u32, bool)> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let rest = stat.rsplit_once(')').unwrap().1;
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap();
        let ppid: u32 = fields.next().unwrap().parse().unwrap();
        table.push((pid, ppid, state == "Z"));
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, zombie) in &table {
            if ppid == parent {
                found.push((pid, zombie));
                frontier.push(pid);
            }
        }
    }
    found
}

/// Whether `pid` is alive: it exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The command line of `pid`, with spaces for NULs.
fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn run_and_pipe_leave_no_descendant_after_sigint_sigterm_or_sighup() {
    let mut cases = Vec::new();
    for (s, signal) in ["INT", "TERM", "HUP"].into_iter().enumerate() {
        let a = format!("sleep 30{s}4; echo done");
        let b = format!("sleep 30{s}5");
        let c = format!("sleep 30{s}6");
        cases.push((
            signal,
            vec!["run", "--", "sh", "-c", &a]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>(),
            2,
        ));
        cases.push((signal, vec!["pipe".to_owned(), b, c], 4));
    }
    for (signal, args, expected) in cases {
        let mut sockpair = Command::new(env!("CARGO_BIN_EXE_sockpair"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the whole tree: sh and sleep (run), two sh and two sleeps (pipe).
        let start = std::time::Instant::now();
        let tree = loop {
            let tree = descendants(sockpair.id());
            let sleeps = tree
                .iter()
                .filter(|(pid, _)| cmdline(*pid).starts_with("sleep"))
                .count();
            if tree.len() >= expected && sleeps == expected / 2 {
                break tree;
            }
            assert!(
                start.elapsed() < LIMIT,
                "{args:?}: the tree never grew: {tree:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        Command::new("kill")
            .args([&format!("-{signal}"), &sockpair.id().to_string()])
            .status()
            .unwrap();
        let status = sockpair.wait().unwrap();
        assert!(!status.success(), "{signal} {args:?}");
        std::thread::sleep(Duration::from_secs(2));
        let left: Vec<String> = tree
            .iter()
            .filter(|(pid, _)| alive(*pid))
            .map(|(pid, _)| format!("{pid} {}", cmdline(*pid)))
            .collect();
        assert!(
            left.is_empty(),
            "SIG{signal} {args:?}: still alive 2 s later: {left:?}"
        );
    }
}

#[test]
fn after_sigkill_the_direct_children_die_too() {
    for args in [
        &["run", "--", "sleep", "3071"][..],
        &["pipe", "exec sleep 3072", "exec sleep 3073"],
    ] {
        let mut sockpair = Command::new(env!("CARGO_BIN_EXE_sockpair"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let want = if args[0] == "run" { 1 } else { 2 };
        let start = std::time::Instant::now();
        let children = loop {
            let tree = descendants(sockpair.id());
            if tree.len() >= want
                && tree
                    .iter()
                    .all(|(pid, _)| cmdline(*pid).starts_with("sleep"))
            {
                break tree;
            }
            assert!(start.elapsed() < LIMIT, "{args:?}: never started");
            std::thread::sleep(Duration::from_millis(5));
        };
        sockpair.kill().unwrap();
        sockpair.wait().unwrap();
        let start = std::time::Instant::now();
        while children.iter().any(|(pid, _)| alive(*pid)) {
            assert!(
                start.elapsed() < LIMIT,
                "{args:?}: a child outlived sockpair"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn a_child_that_reads_the_terminal_still_can() {
    // `script` (util-linux) runs the command on a new pseudo-terminal, as its foreground
    // job; a child in a process group of its own would be stopped by SIGTTIN instead.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("no `script`: terminal test not run");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_sockpair");
    for line in [
        format!(r#"'{bin}' pipe 'read x </dev/tty; echo "tty said $x" >&2' 'cat >/dev/null'"#),
        format!(r#"'{bin}' run -- sh -c 'read x </dev/tty; echo "tty said $x" >&3' </dev/null"#),
    ] {
        let out = run_with_input(
            Command::new("script").args(["-qec", &line, "/dev/null"]),
            b"hello\n",
        );
        assert!(out.status.success(), "{line}: {out:?}");
        let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
        assert!(all.contains("tty said hello"), "{line}: {all}");
    }
}

/// Runs `sockpair args` with stdout writing to `stdout`, stdin empty, stderr captured.
fn with_stdout(args: &[&str], stdout: Stdio) -> Output {
    with_stdio(args, stdout, Stdio::piped())
}

/// Runs `sockpair args` with the given stdout and stderr, stdin empty.
fn with_stdio(args: &[&str], stdout: Stdio, stderr: Stdio) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sockpair"));
    command.args(args).stdin(Stdio::null()).stdout(stdout);
    let child = command.stderr(stderr).spawn().expect("spawn");
    common::wait_limited(child, &format!("{args:?}"))
}

/// A full disk (`/dev/full`) is one line on stderr and exit status 2, never a panic;
/// for every subcommand that writes to stdout, and for the help.
#[test]
fn a_write_error_on_stdout_is_one_line_and_status_2() {
    for args in [
        &["demo"][..],
        &["demo", "--type", "seqpacket"],
        &["help"],
        &["--help"],
        &["run", "--", "sh", "-c", "echo hi >&3"],
        &["bench", "--size", "64", "--duration", "0.2", "--json"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = with_stdout(args, Stdio::from(full));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("sockpair: write to stdout: No space left on device"),
            "{args:?}: {err}"
        );
    }
}

/// A reader that is gone (`... | head -0`): a quiet stop, as in a shell pipeline.
#[test]
fn a_closed_stdout_pipe_is_a_quiet_exit() {
    for args in [&["demo"][..], &["help"], &["--help"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = with_stdout(args, Stdio::from(writer));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
}

/// A stderr that cannot take our message (a full disk) is no panic (status 101): the
/// status says what happened all the same.
#[test]
fn a_full_stderr_is_not_a_panic() {
    for (args, status) in [
        (&["pipe", "exit 3", "true"][..], 3),
        (&["run", "--", "/no/such/program"], 2),
        (&["demo", "--type", "seqpacket"], 0),
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = with_stdio(args, Stdio::piped(), Stdio::from(full));
        assert_eq!(out.status.code(), Some(status), "{args:?}");
    }
}
