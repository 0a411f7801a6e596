//! `sockpair`: socket pairs between programs, from the shell.

mod demo;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Anonymous, pre-connected socket pairs (socketpair(2)) between programs.
#[derive(Debug, Parser)]
#[command(name = "sockpair", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The seed's program: create a pair, fork, and exchange one message each way.
    Demo {
        /// The socket type of the pair.
        #[arg(long = "type", value_name = "TYPE", value_enum, default_value_t = SocketType::Stream)]
        ty: SocketType,
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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => err.exit(), // --help, --version
        Err(err) => {
            eprintln!("sockpair: {}", one_line(&err.to_string()));
            return ExitCode::from(FAILURE);
        }
    };
    let result = match cli.command {
        Command::Demo { ty } => demo::run(ty.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sockpair: {err:#}");
            ExitCode::from(FAILURE)
        }
    }
}

/// clap's multi-line usage error as one line: `sockpair: <what> [<hint>]`.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
        })
        .map(|line| line.strip_prefix("error: ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join(" ")
}
