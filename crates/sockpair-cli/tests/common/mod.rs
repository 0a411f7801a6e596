//! What both test binaries need: waiting for a child with a limit.

use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::Duration;

/// How long one run may take before the test calls it hung and kills it.
pub const LIMIT: Duration = Duration::from_secs(30);

/// Waits for `child` and collects its output; after [`LIMIT`], kills it and fails,
/// naming `what` ran.
pub fn wait_limited(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{what} still running after {LIMIT:?}; killed");
        }
    }
}
