//! `sockpair run` and `pipe` in shell pipelines with real programs (sh, yes, head, seq,
//! wc, python3): the output bytes and exit statuses a shell user expects, many runs in a
//! row where timing could change them, and no process left behind after each case.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs of a case whose outcome could depend on timing.
const RUNS: usize = 20;

/// Runs `script` with bash, `$S` naming the sockpair binary, and every process it
/// starts marked (an environment variable) so that [`assert_nothing_left`] can look
/// for them afterwards.
fn bash(script: &str, mark: &str) -> Output {
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("S", env!("CARGO_BIN_EXE_sockpair"))
        .env("SOCKPAIR_TEST_MARK", mark)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash");
    common::wait_limited(child, script)
}

/// The processes still alive that carry `mark` in their environment.
fn marked(mark: &str) -> Vec<String> {
    let needle = format!("SOCKPAIR_TEST_MARK={mark}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        });
        if !zombie
            && environ
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// No process of the case is left (a moment is allowed for the kernel to reap).
fn assert_nothing_left(mark: &str) {
    for _ in 0..50 {
        if marked(mark).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("left behind: {:?}", marked(mark));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `script` `runs` times under `mark`, asserting stdout, stderr and status each time
/// and that nothing is left behind.
fn each_run(runs: usize, mark: &str, script: &str, stdout: &str, stderr: &str, status: i32) {
    for run in 0..runs {
        let out = bash(script, mark);
        assert_eq!(text(&out.stdout), stdout, "run {run} of {script}");
        assert_eq!(text(&out.stderr), stderr, "run {run} of {script}");
        assert_eq!(out.status.code(), Some(status), "run {run} of {script}");
        assert_nothing_left(mark);
    }
}

#[test]
fn one_reader_per_byte_of_stdin() {
    let script = |stdin: &str| {
        format!(
            r#"seq 1 100000 | "$S" run {stdin} -- sh -c 'n=$(wc -l); m=$(wc -l <&3); echo "$n $m" >&3'"#
        )
    };
    // The relay reads stdin (the default); the program's own stdin is /dev/null.
    each_run(5, "stdin-relay", &script(""), "0 100000\n", "", 0);
    each_run(
        2,
        "stdin-relay",
        &script("--stdin relay"),
        "0 100000\n",
        "",
        0,
    );
    // The program reads it; the pair brings only EOF.
    each_run(
        5,
        "stdin-child",
        &script("--stdin child"),
        "100000 0\n",
        "",
        0,
    );
    // Nobody does.
    each_run(2, "stdin-null", &script("--stdin null"), "0 0\n", "", 0);
}

#[test]
fn output_goes_on_until_every_writer_closed_the_end() {
    each_run(
        RUNS,
        "late-writer",
        r#""$S" run -- sh -c '(sleep 0.2; echo late >&3) & echo early >&3'"#,
        "early\nlate\n",
        "",
        0,
    );
    // A background process that keeps fd 3 is waited for, as a shell waits for a
    // pipe's writers, and is not left running.
    each_run(
        3,
        "background-holder",
        r#""$S" run -- sh -c 'sleep 0.3 & echo started >&3; exit 7'"#,
        "started\n",
        "",
        7,
    );
}

#[test]
fn a_background_process_that_closed_the_end_does_not_hold_run_up() {
    // It is left running (documented): run is done when the end is.
    let out = bash(
        r#""$S" run -- sh -c 'sleep 5 3>&- & echo done >&3'; pgrep -f "^sleep 5$" >/dev/null && echo still-running"#,
        "closed-holder",
    );
    assert_eq!(
        text(&out.stdout),
        "done\nstill-running\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    for line in marked("closed-holder") {
        let pid = line.split(':').next().unwrap();
        let _ = Command::new("kill").arg(pid).status();
    }
    assert_nothing_left("closed-holder");
}

#[test]
fn run_into_head_is_like_a_pipe_into_head() {
    // The writer dies of SIGPIPE, silently; the pipeline's status is head's.
    each_run(
        RUNS,
        "run-head",
        r#"{ "$S" run -- sh -c 'yes line >&3'; echo "sockpair $?" >&2; } | head -1"#,
        "line\n",
        "sockpair 141\n",
        0,
    );
}

#[test]
fn pipe_into_head_is_like_a_pipe_into_head() {
    each_run(
        RUNS,
        "pipe-head",
        r#""$S" pipe 'yes' 'head -1 >&2'"#,
        "",
        "y\n",
        0,
    );
    each_run(
        5,
        "pipe-seq",
        r#""$S" pipe 'seq 1 1000000' 'head -3 >&2'"#,
        "",
        "1\n2\n3\n",
        0,
    );
}

#[test]
fn after_ctrl_c_only_the_status_says_it() {
    for signal in ["INT", "TERM", "HUP"] {
        let number = match signal {
            "INT" => 2,
            "TERM" => 15,
            _ => 1,
        };
        for subcommand in [r#"pipe 'sleep 20' 'sleep 20'"#, r#"run -- sleep 20"#] {
            let mark = format!("signal-{signal}");
            let script = format!(
                r#""$S" {subcommand} & pid=$!; sleep 0.3; kill -{signal} $pid; wait $pid; echo "status $?""#
            );
            let out = bash(&script, &mark);
            assert_eq!(
                text(&out.stdout),
                format!("status {}\n", 128 + number),
                "{script}"
            );
            // Nothing of ours: only bash's own word for a job killed by SIGHUP may be there.
            let err = text(&out.stderr);
            assert!(
                err.lines()
                    .all(|line| line
                        .ends_with(&format!("Hangup                  \"$S\" {subcommand}"))),
                "{script}: {err}"
            );
            assert_nothing_left(&mark);
        }
    }
}

#[test]
fn an_unfinished_last_line_is_a_line_however_the_stream_ends() {
    let child = r#"sh -c 'printf "no newline at end" >&3'"#;
    for (option, redirect) in [
        ("", "< /dev/null"),
        ("", "<<< 'a line of ours'"),
        ("--stdin null", ""),
        ("--stdin child", "< /dev/null"),
    ] {
        each_run(
            RUNS / 2,
            "unfinished-line",
            &format!(r#""$S" run --framing lines {option} -- {child} {redirect}"#),
            "no newline at end\n",
            "",
            0,
        );
    }
    // On a seqpacket pair each record is a line already.
    each_run(
        5,
        "record-line",
        r#""$S" run --type seqpacket --framing lines -- sh -c 'printf "one record" >&3'"#,
        "one record\n",
        "",
        0,
    );
}

#[test]
fn a_length_frame_that_one_line_cannot_carry_is_an_error() {
    let python = |body: &str| {
        format!(
            r#""$S" run --framing length -- python3 -c 'from multiprocessing.connection import Connection; c = Connection(3); {body}'"#
        )
    };
    // A frame holding a newline: one line naming the option that carries it.
    let out = bash(&python(r#"c.send_bytes(b"a\nb")"#), "length-newline");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("sockpair: message 1 from the child holds a newline"),
        "{err}"
    );
    assert!(err.contains("--framing raw"), "{err}");
    assert_nothing_left("length-newline");
    // Frames both ways, Python's own framing.
    each_run(
        3,
        "length-python",
        &format!(
            "printf 'hello\\nworld\\n' | {}",
            python("[c.send_bytes(c.recv_bytes().upper()) for _ in range(2)]")
        ),
        "HELLO\nWORLD\n",
        "",
        0,
    );
    // A stream that ends inside a frame is an error whatever the timing.
    for run in 0..RUNS / 2 {
        let out = bash(
            r#""$S" run --framing length -- sh -c 'printf "\000\000\000\011half" >&3'"#,
            "length-half",
        );
        assert_eq!(out.status.code(), Some(2), "run {run}");
        let err = text(&out.stderr);
        assert!(err.contains("ended inside a frame"), "run {run}: {err}");
        assert_nothing_left("length-half");
    }
}

#[test]
fn a_closed_stdout_is_one_line_and_status_2() {
    for subcommand in ["run -- sh -c 'echo hi >&3'", "demo", "help"] {
        let out = bash(&format!(r#""$S" {subcommand} >&-"#), "closed-stdout");
        assert_eq!(out.status.code(), Some(2), "{subcommand}");
        assert_eq!(
            text(&out.stderr),
            "sockpair: stdout is closed (descriptor 1 is not open): nowhere to write\n",
            "{subcommand}"
        );
        assert_nothing_left("closed-stdout");
    }
}

#[test]
fn run_help_shows_the_separator_and_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_sockpair"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    assert!(
        help.contains("Usage: sockpair run [OPTIONS] -- PROGRAM [ARGS]..."),
        "{help}"
    );
    assert!(help.contains("Examples:"), "{help}");
    assert_eq!(
        help.lines()
            .filter(|line| line.trim_start().starts_with("echo ping |")
                || line.contains("--framing length -- python3"))
            .count(),
        2,
        "{help}"
    );
    assert!(help.contains("--stdin <WHO>"), "{help}");
}

#[test]
fn bench_says_what_it_measured() {
    let out = Command::new(env!("CARGO_BIN_EXE_sockpair"))
        .args(["bench", "--help"])
        .output()
        .unwrap();
    let help = text(&out.stdout);
    for row in [
        "libc",
        "socket",
        "channel",
        "async-channel",
        "tokio-framed",
        "pipe",
    ] {
        assert!(help.contains(row), "{row} in: {help}");
    }
    assert!(help.contains("batched"), "{help}");
    let chart = std::env::temp_dir().join(format!("sockpair-chart-{}.svg", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_sockpair"))
        .args(["bench", "--size", "64", "--duration", "0.3", "--plot"])
        .arg(&chart)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("s of measurement (--duration 0.3 asked for about 0.3 s)"),
        "{table}"
    );
    assert!(
        table.contains(
            "Bursts are batched (feed each message, flush once) for channel, async-channel \
             and tokio-framed"
        ),
        "{table}"
    );
    let svg = std::fs::read_to_string(&chart).unwrap();
    std::fs::remove_file(&chart).unwrap();
    assert!(svg.contains("not to scale"), "the x-axis says what it is");
    assert!(svg.contains("batched"));
}
