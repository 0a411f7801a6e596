//! `sockpair`: socket pairs between programs, from the shell.
#![deny(unsafe_code)]

mod bench;
mod demo;
mod descendants;
mod node_line;
mod pipe;
mod run;
mod sys;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Anonymous, pre-connected socket pairs (socketpair(2)) between programs.
#[derive(Debug, Parser)]
#[command(
    name = "sockpair",
    version,
    about,
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The fork-and-talk example of TLPI §57.5: create a pair, fork, and exchange one
    /// message each way.
    Demo {
        /// The socket type of the pair.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
    },
    /// Run PROGRAM with one end of a pair at fd N and NAME=N in its environment; copy
    /// our stdin to the other end and the other end to our stdout. Exits with the
    /// program's status (128+signal if it was killed).
    #[command(
        override_usage = "sockpair run [OPTIONS] -- PROGRAM [ARGS]...",
        long_about = RUN_ABOUT,
        after_help = RUN_EXAMPLES,
        after_long_help = RUN_EXAMPLES
    )]
    Run {
        /// The socket type of the pair.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
        /// The descriptor number of the program's end (3 or more; systemd's is always 3).
        #[arg(long, value_name = "N", default_value_t = 3, allow_negative_numbers = true, value_parser = parse_fd)]
        fd: i32,
        /// The variable that tells the program N.
        #[arg(long, value_name = "NAME", default_value = "SOCKPAIR_FD", value_parser = parse_env_name)]
        env: String,
        /// Announce the end as systemd socket activation does: LISTEN_FDS=1,
        /// LISTEN_PID, LISTEN_FDNAMES=sockpair, at fd 3.
        #[arg(long, conflicts_with_all = ["env", "fd"])]
        systemd: bool,
        /// How messages cross the pair. raw: bytes as they come, both ways; lines: one
        /// stdin line = one message, one message = one stdout line (an unfinished last
        /// line is a line); length: the same, as 4-byte big-endian length frames
        /// (Python's Connection.send_bytes/recv_bytes; a frame that holds a newline is an
        /// error, not several lines). On seqpacket and dgram pairs, lines and length send
        /// one record per line.
        #[arg(long, value_enum, default_value_t = run::Framing::Raw)]
        framing: run::Framing,
        /// Who reads our stdin. relay: sockpair, into the pair (the program's own stdin
        /// is /dev/null); child: the program (a terminal, say; the pair then carries only
        /// EOF from us); null: nobody. Never two readers.
        #[arg(long, value_enum, value_name = "WHO", default_value_t = run::StdinOwner::Relay)]
        stdin: run::StdinOwner,
        /// Talk to a Node.js child over its IPC channel (NODE_CHANNEL_FD, json mode, a
        /// stream pair): each stdin line must be one JSON message for
        /// process.on('message'); what the child process.send()s comes out as JSON lines.
        #[arg(long, conflicts_with_all = ["env", "systemd", "framing"])]
        node: bool,
        /// The program and its arguments, after --.
        #[arg(
            required = true,
            trailing_var_arg = true,
            value_name = "PROGRAM [ARGS]..."
        )]
        command: Vec<OsString>,
    },
    /// Run two shell commands, each with stdin and stdout on one end of a single pair: a
    /// two-way pipe between programs, with no relay process in between.
    ///
    /// On seqpacket and dgram pairs every write is one record, and a read shorter than
    /// the record loses the rest of it (the shell's `read` reads one byte at a time):
    /// use those types with programs that read whole records.
    ///
    /// When one command exits, its end stops taking data: the other's next write to it
    /// fails with EPIPE (SIGPIPE), as on a pipe whose reader is gone, and it reads EOF
    /// once every process holding that end has closed it. A command killed by SIGPIPE
    /// has not failed (`yes | head -1`). The exit status is B's if B failed, else A's
    /// if A failed, else 0 (bash's pipefail, SIGPIPE aside), each failure said in one
    /// line; after SIGINT, SIGTERM or SIGHUP nothing is said and sockpair dies of the
    /// same signal (128+n).
    Pipe {
        /// The socket type of the pair.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
        /// The first command, run with `sh -c`.
        a: String,
        /// The second command, run with `sh -c`.
        b: String,
    },
    /// Measure round-trip latency and one-way throughput between this process and a
    /// child: sockpair's Socket and Channel beside raw libc calls on a socketpair and a
    /// pair of pipes, interleaved in one run, with ratios against libc.
    ///
    /// Rows: libc (raw send/recv: the baseline of the ratios, headerless and
    /// descriptor-blind, a floor), libc-framed (the channel's frames by hand with
    /// sendmsg/recvmsg and room for descriptors: the limit), socket (sockpair's Socket),
    /// channel (Channel), channel-unbatched (the same, its burst one send per message),
    /// async-channel (AsyncChannel on tokio), tokio-framed (tokio-util's Framed), pipe (a
    /// pair of pipes), shared (from 1 MiB: Channel<Shared>, a sealed memfd handed over,
    /// its bytes neither copied nor read). The bursts of channel, async-channel and
    /// tokio-framed are batched: feed each message, flush once.
    Bench {
        /// The socket type of the pairs.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
        /// A message size to measure, in bytes (1 to 1 GiB); repeat for several
        /// [default: 1 64 4096 65536].
        #[arg(long = "size", value_name = "BYTES", allow_negative_numbers = true, value_parser = parse_size)]
        sizes: Vec<u64>,
        /// About how long the whole measurement takes, in seconds (the footer says how
        /// long it took).
        #[arg(long, value_name = "SECS", default_value_t = 5.0, allow_negative_numbers = true, value_parser = parse_duration)]
        duration: f64,
        /// Do not pin this process and the child to one CPU. Pinned (the default), small
        /// round trips measure the code, not where the scheduler put the two processes
        /// (a cross-CPU wake-up costs more than the rest on virtual machines).
        #[arg(long)]
        no_pin: bool,
        /// Pinning is the default; accepted for old scripts.
        #[arg(long, hide = true, conflicts_with = "no_pin")]
        pin: bool,
        /// Print one JSON array, one object per measured row, instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write an SVG chart of latency and throughput against message size.
        #[arg(long, value_name = "FILE.svg", value_parser = parse_svg_path)]
        plot: Option<PathBuf>,
    },
    /// The benchmark's child (started by `sockpair bench` itself).
    #[command(name = bench::child::MODE, hide = true)]
    BenchChild,
    /// Print this message or the help of the given subcommand.
    Help {
        /// The subcommand to describe.
        command: Option<String>,
    },
}

/// `sockpair run --help`: what the relay does, beyond the one line of `-h`.
const RUN_ABOUT: &str =
    "Run PROGRAM with one end of a pair at fd N and NAME=N in its environment; copy \
our stdin to the other end and the other end to our stdout. Exits with the program's status \
(128+signal if it was killed).

As in a shell pipeline, with the pair in the pipe's place: only one process reads our stdin \
(--stdin); the output goes on until every process holding the program's end has closed it \
(background processes included, as a shell waits for every writer) and the program has \
exited, then sockpair exits with the program's status; on a dgram pair, which has no end of \
stream, the program's exit ends it. When our stdout closes (| head -1), our end stops \
reading: the program's next write fails with EPIPE (SIGPIPE), as on a pipe. A background \
process that closed its copy of fd N is not waited for, and may still run after sockpair \
exits; one that keeps fd N open is waited for (close it with 3>&- to let sockpair go).";

/// The examples under `sockpair run --help`.
const RUN_EXAMPLES: &str = "Examples:
  echo ping | sockpair run -- sh -c 'read line <&3; echo \"got $line\" >&3'
  sockpair run --framing length -- python3 -c 'from multiprocessing.connection import Connection; c = Connection(3); c.send_bytes(c.recv_bytes().upper())' <<< hello";

/// `--fd`: a descriptor number the program's end can have (said about the value, not
/// taken for an option).
fn parse_fd(text: &str) -> Result<i32, String> {
    match text.parse::<i64>() {
        Ok(n) if (3..=i64::from(i32::MAX)).contains(&n) => Ok(n as i32),
        Ok(n) if n < 3 => Err(format!(
            "{n} is not a descriptor the program's end can have: 0, 1 and 2 are stdio, \
             so 3 or more"
        )),
        Ok(_) => Err("too large for a descriptor number".to_owned()),
        Err(_) => Err("not a descriptor number".to_owned()),
    }
}

/// `--env`: a name a variable can have.
fn parse_env_name(text: &str) -> Result<String, String> {
    match text.is_empty() || text.contains(['=', '\0']) {
        true => Err("a variable name must be non-empty and hold no '='".to_owned()),
        false => Ok(text.to_owned()),
    }
}

/// `--duration`: seconds, more than 0 and at most an hour.
fn parse_duration(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 3600.0 => Ok(s),
        Ok(_) => Err("a duration is more than 0 and at most 3600 seconds".to_owned()),
        Err(_) => Err("not a number of seconds".to_owned()),
    }
}

/// `--size`: bytes, 1 to 1 GiB.
fn parse_size(text: &str) -> Result<u64, String> {
    match text.parse::<i128>() {
        Ok(n) if (1..=1 << 30).contains(&n) => Ok(n as u64),
        Ok(_) => Err("a message size is 1 to 1073741824 bytes".to_owned()),
        Err(_) => Err("not a number of bytes".to_owned()),
    }
}

/// `--plot`: an SVG file, the one format the chart is written in.
fn parse_svg_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    match path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("svg"))
    {
        true => Ok(path),
        false => Err("the chart is SVG: name a file ending in .svg".to_owned()),
    }
}

/// The socket types a pair can have, as the command line names them.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SocketType {
    /// SOCK_STREAM: a byte stream.
    Stream,
    /// SOCK_SEQPACKET: records, with EOF.
    Seqpacket,
    /// SOCK_DGRAM: datagrams.
    Dgram,
}

impl From<SocketType> for sockpair::Type {
    fn from(ty: SocketType) -> Self {
        match ty {
            SocketType::Stream => sockpair::Type::STREAM,
            SocketType::Seqpacket => sockpair::Type::SEQPACKET,
            SocketType::Dgram => sockpair::Type::DGRAM,
        }
    }
}

/// Exit status for our own errors (bad usage, a failed system call).
const FAILURE: u8 = 2;

/// Our stdout was closed under us (`EPIPE`): like a program in a shell pipeline whose
/// reader is done (`... | head -1`), we stop quietly.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Says `args` on stderr, one line with its newline; a stderr that cannot take it (closed,
/// or a full disk) is no reason to fail or panic, so its error is dropped.
fn warn(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Writes `bytes` to stdout and flushes: a closed pipe is [`StdoutClosed`], any other
/// failure (`/dev/full`: ENOSPC) an error that says it was stdout.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("write to stdout")),
    }
}

fn main() -> ExitCode {
    // clap renders its own errors (with their usage and tips) and exits with 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version: on stdout, which may be closed or full.
        Err(err) if !err.use_stderr() => {
            return match write_stdout(err.render().to_string().as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => report(&err),
            };
        }
        Err(err) => err.exit(),
    };
    if let Err(err) = check(&cli.command) {
        err.exit();
    }
    let writes_stdout = !matches!(cli.command, Command::Pipe { .. } | Command::BenchChild);
    if writes_stdout && sys::stdout_closed_at_start() {
        warn(format_args!(
            "sockpair: stdout is closed (descriptor 1 is not open): nowhere to write"
        ));
        return ExitCode::from(FAILURE);
    }
    if matches!(cli.command, Command::Run { .. } | Command::Pipe { .. })
        && let Err(err) = descendants::watch()
    {
        warn(format_args!("sockpair: watch for signals: {err}"));
        return ExitCode::from(FAILURE);
    }
    let result = match cli.command {
        Command::Demo { ty } => demo::run(ty.into()).map(|()| ExitCode::SUCCESS),
        Command::Run {
            ty,
            fd,
            env,
            systemd,
            framing,
            stdin,
            node,
            command,
        } => {
            let mut command = command.into_iter();
            run::run(run::Run {
                ty: ty.into(),
                fd,
                env,
                systemd,
                framing,
                node,
                stdin,
                program: command.next().expect("clap requires a program"),
                args: command.collect(),
            })
        }
        Command::Pipe { ty, a, b } => pipe::pipe(ty.into(), &a, &b),
        Command::Bench {
            ty,
            sizes,
            duration,
            no_pin,
            pin: _,
            json,
            plot,
        } => bench::bench(bench::Bench {
            ty: ty.into(),
            sizes: match sizes.is_empty() {
                true => bench::DEFAULT_SIZES.to_vec(),
                false => sizes.into_iter().map(|size| size as usize).collect(),
            },
            duration,
            pin: !no_pin,
            json,
            plot,
        }),
        Command::BenchChild => bench::child_main(),
        Command::Help { command } => help(command.as_deref()),
    };
    descendants::finish();
    match result {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// The usage errors clap cannot see alone, as clap's own errors (exit status 2).
fn check(command: &Command) -> Result<(), clap::Error> {
    if let Command::Run { ty, node: true, .. } = command
        && !matches!(ty, SocketType::Stream)
    {
        let ty = sockpair::Type::from(*ty);
        let mut cli = Cli::command();
        let mut run = cli
            .find_subcommand_mut("run")
            .expect("run is a subcommand")
            .clone()
            .bin_name("sockpair run");
        return Err(run.error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--node needs a stream pair (Node's IPC channel is a byte stream), not --type {ty}"
            ),
        ));
    }
    Ok(())
}

/// Our own error as one line on stderr and exit status 2; nothing for a closed stdout,
/// nor once a signal is ending us (its status says it all).
fn report(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<StdoutClosed>().is_some() {
        return ExitCode::SUCCESS;
    }
    if descendants::stopping() {
        return ExitCode::from(FAILURE);
    }
    warn(format_args!("sockpair: {err:#}"));
    ExitCode::from(FAILURE)
}

/// `sockpair help [COMMAND]`: the help of the command, or of `sockpair` itself.
fn help(command: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut cli = Cli::command();
    let help = match command {
        None => cli.render_help(),
        Some(name) => match cli.find_subcommand_mut(name) {
            Some(sub) if !sub.is_hide_set() => sub
                .clone()
                .bin_name(format!("sockpair {name}"))
                .render_help(),
            _ => {
                cli.error(
                    clap::error::ErrorKind::InvalidSubcommand,
                    format!("no such command: '{name}'"),
                )
                .exit();
            }
        },
    };
    write_stdout(help.to_string().as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
