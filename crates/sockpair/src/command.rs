//! Reading a [`std::process::Command`], so that sockpair can start it on its own fast
//! path instead of through std.
//!
//! std has getters for the program, the arguments, the environment changes and the
//! working directory, but none (on stable Rust) for `env_clear`, stdio, uid, gid,
//! process group or `arg0` (rust-lang/rust#149070 tracks the first). Its alternate
//! `Debug` output does show which of those are set. So: a `Command` whose `{:#?}` shows
//! only fields we know how to honour is started directly; any other `Command`, including
//! one whose `Debug` output we do not recognise, goes through std, which honours
//! everything and is merely slower in large parents.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

/// The parts of a `Command` that sockpair's own spawn path honours.
#[derive(Debug)]
pub(crate) struct CommandParts {
    pub program: OsString,
    /// Without `argv[0]`, which is the program.
    pub args: Vec<OsString>,
    /// The complete environment of the child, the parent's with the `Command`'s changes.
    pub env: Vec<(OsString, OsString)>,
    pub cwd: Option<PathBuf>,
}

/// Top-level fields of `Command`'s alternate `Debug` output that the direct path honours
/// (`create_pidfd` is always printed on Linux and changes nothing for us).
const KNOWN_FIELDS: [&str; 5] = ["program", "args", "env", "cwd", "create_pidfd"];

impl CommandParts {
    /// The parts of `cmd`, or `None` if it sets something only std can honour.
    pub(crate) fn read(cmd: &Command) -> Option<CommandParts> {
        let debug = format!("{cmd:#?}");
        // std replaces an argument with a NUL byte by this marker and fails the spawn
        // later; leave that to std too.
        if !debug.starts_with("Command {\n") || debug.contains("<string-with-nul>") {
            return None;
        }
        let mut program_line = None;
        let mut argv0_line = None;
        let mut lines = debug.lines().peekable();
        while let Some(line) = lines.next() {
            let Some(field) = line
                .strip_prefix("    ")
                .filter(|rest| !rest.starts_with(' '))
            else {
                continue;
            };
            if field.starts_with(['}', ']', ')']) {
                continue; // the closing line of a multi-line field
            }
            let name = field.split(':').next()?;
            if !KNOWN_FIELDS.contains(&name) {
                return None;
            }
            match name {
                "program" => program_line = field.strip_prefix("program: "),
                "args" => argv0_line = lines.peek().map(|first| first.trim()),
                _ => {}
            }
        }
        // An `arg0` shows as a first argument that differs from the program.
        if program_line?.strip_suffix(',')? != argv0_line?.strip_suffix(',')? {
            return None;
        }
        let clear = debug.contains("\n        clear: true,");
        let mut env: Vec<(OsString, OsString)> = if clear {
            Vec::new()
        } else {
            std::env::vars_os().collect()
        };
        for (key, value) in cmd.get_envs() {
            env.retain(|(k, _)| k != key);
            if let Some(value) = value {
                env.push((key.to_owned(), value.to_owned()));
            }
        }
        Some(CommandParts {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            env,
            cwd: cmd.get_current_dir().map(ToOwned::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    #[test]
    fn program_args_env_and_cwd_are_read() {
        let mut cmd = Command::new("ls");
        cmd.args(["-l", "a b"])
            .env("SOCKPAIR_TEST_SET", "1")
            .current_dir("/tmp");
        let parts = CommandParts::read(&cmd).expect("direct path");
        assert_eq!(parts.program, "ls");
        assert_eq!(parts.args, ["-l", "a b"]);
        assert!(
            parts
                .env
                .contains(&("SOCKPAIR_TEST_SET".into(), "1".into()))
        );
        assert!(
            parts.env.iter().any(|(k, _)| k == "PATH"),
            "the parent's environment is kept"
        );
        assert_eq!(parts.cwd, Some(PathBuf::from("/tmp")));
    }

    #[test]
    fn removed_and_cleared_environments_are_honoured() {
        let mut cmd = Command::new("env");
        cmd.env_remove("PATH");
        let parts = CommandParts::read(&cmd).unwrap();
        assert!(!parts.env.iter().any(|(k, _)| k == "PATH"));

        cmd.env_clear().env("ONLY", "this");
        let parts = CommandParts::read(&cmd).unwrap();
        assert_eq!(parts.env, [("ONLY".into(), "this".into())]);
    }

    #[test]
    fn what_only_std_can_honour_sends_the_command_to_std() {
        let cases: [fn(&mut Command); 6] = [
            |c| {
                c.stdin(Stdio::null());
            },
            |c| {
                c.stdout(Stdio::piped());
            },
            |c| {
                c.stderr(Stdio::inherit());
            },
            |c| {
                c.uid(rustix::process::getuid().as_raw());
            },
            |c| {
                c.process_group(0);
            },
            |c| {
                c.arg0("other-name");
            },
        ];
        for (i, set) in cases.into_iter().enumerate() {
            let mut cmd = Command::new("true");
            set(&mut cmd);
            assert!(CommandParts::read(&cmd).is_none(), "case {i}: {cmd:#?}");
        }
    }
}
