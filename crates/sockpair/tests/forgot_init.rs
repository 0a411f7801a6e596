//! A real program that forgets `worker::init()`: `worker::spawn` and `Pool::new` return
//! an error naming it and start no process, so `main` never runs a second time (without
//! the check, every worker would run `main`, spawn workers of its own, and so on).
//!
//! Its own `main` (`harness = false`): a test harness is exactly what a worker must not
//! re-run. The guard: should a worker ever start and run this `main` again, it stops at
//! once with status 99, so a regression fails this test instead of multiplying processes.

use std::process::ExitCode;

use sockpair::worker::{self, Pool};

fn double(x: u32) -> u32 {
    x * 2
}

/// This process's children, as the kernel lists them.
fn children() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flat_map(|task| {
            let listed = std::fs::read_to_string(task.unwrap().path().join("children"));
            listed
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn main() -> ExitCode {
    if std::env::var_os("SOCKPAIR_WORKER").is_some() {
        eprintln!("forgot_init: main ran again, in a worker: the missing init() was not caught");
        return ExitCode::from(99);
    }
    let mut failures = Vec::new();
    match worker::spawn(double, 21) {
        Ok(handle) => failures.push(format!(
            "worker::spawn started a worker (pid {:?}) without init(): {:?}",
            handle.pid(),
            handle.join()
        )),
        Err(err) if err.to_string().contains("sockpair::worker::init()") => {}
        Err(err) => failures.push(format!("worker::spawn: an error not naming init(): {err}")),
    }
    match Pool::new(2) {
        Ok(_) => failures.push("Pool::new started workers without init()".to_owned()),
        Err(err) if err.to_string().contains("sockpair::worker::init()") => {}
        Err(err) => failures.push(format!("Pool::new: an error not naming init(): {err}")),
    }
    // Both ways of starting a worker: from the fork server and with exec.
    for exec in [false, true] {
        let mut options = worker::Options::new();
        options.exec(exec);
        if let Ok(handle) = options.spawn(double, 21) {
            failures.push(format!(
                "Options (exec {exec}) spawned {:?} without init()",
                handle.pid()
            ));
        }
        if options.pool(1).is_ok() {
            failures.push(format!(
                "Options (exec {exec}) started a pool without init()"
            ));
        }
    }
    let left = children();
    if !left.is_empty() {
        failures.push(format!("processes were started: {left:?}"));
    }
    for failure in &failures {
        eprintln!("forgot_init: {failure}");
    }
    match failures.is_empty() {
        true => {
            println!("forgot_init: spawn and Pool::new refused before init(), no process started");
            ExitCode::SUCCESS
        }
        false => ExitCode::FAILURE,
    }
}
