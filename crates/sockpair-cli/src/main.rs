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
    Run {
        /// The socket type of the pair.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
        /// The descriptor number of the program's end (3 or more).
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(i32).range(3..))]
        fd: i32,
        /// The variable that tells the program N.
        #[arg(long, value_name = "NAME", default_value = "SOCKPAIR_FD")]
        env: String,
        /// Announce the end as systemd socket activation does: LISTEN_FDS=1,
        /// LISTEN_PID, LISTEN_FDNAMES=sockpair, at fd 3.
        #[arg(long, conflicts_with = "env")]
        systemd: bool,
        /// How messages cross the pair. raw: bytes as they come; lines: one stdin line =
        /// one message, one message = one stdout line; length: the same, as 4-byte
        /// big-endian length frames (Python's Connection.send_bytes/recv_bytes). On
        /// seqpacket and dgram pairs, lines and length send one record per line.
        #[arg(long, value_enum, default_value_t = run::Framing::Raw)]
        framing: run::Framing,
        /// Talk to a Node.js child over its IPC channel (NODE_CHANNEL_FD, json mode):
        /// each stdin line must be one JSON message for process.on('message'); what the
        /// child process.send()s comes out as JSON lines.
        #[arg(long, conflicts_with_all = ["env", "systemd", "framing"])]
        node: bool,
        /// The program and its arguments (after --).
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
    Bench {
        /// The socket type of the pairs.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
        /// A message size to measure, in bytes (1 to 1 GiB); repeat for several
        /// [default: 1 64 4096 65536].
        #[arg(long = "size", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
        sizes: Vec<u64>,
        /// About how long the whole measurement takes, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
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
        #[arg(long, value_name = "FILE.svg")]
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

/// Our own error as one line on stderr and exit status 2; nothing for a closed stdout.
fn report(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<StdoutClosed>().is_some() {
        return ExitCode::SUCCESS;
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
