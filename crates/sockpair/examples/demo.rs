// The fork-and-talk example of TLPI §57.5: a stream pair, a fork, one message each way.
//
// Run it with `cargo run -p sockpair --example demo`. It prints exactly:
//
// ```text
// Child received: Hello from parent
// Parent received: Hello from child
// ```
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use sockpair::{Fork, Type, exit_immediately, fork};

fn main() -> io::Result<()> {
    // The child may only do async-signal-safe work (see `fork`), so it writes its line
    // with one plain write(2) on a copy of stdout made before the fork.
    let stdout = File::from(io::stdout().as_fd().try_clone_to_owned()?);
    // SAFETY: the child only calls recv, write, send and _exit.
    match unsafe { fork(Type::STREAM)? } {
        Fork::Child { socket } => {
            let mut buf = [0; 64];
            let ok = match socket.recv(&mut buf) {
                Ok(n) if &buf[..n] == b"Hello from parent" => {
                    (&stdout)
                        .write_all(b"Child received: Hello from parent\n")
                        .is_ok()
                        && socket.send(b"Hello from child").is_ok()
                }
                _ => false,
            };
            exit_immediately(if ok { 0 } else { 1 })
        }
        Fork::Parent { mut child, socket } => {
            drop(stdout);
            socket.send(b"Hello from parent")?;
            let mut buf = [0; 64];
            let n = socket.recv(&mut buf)?;
            println!("Parent received: {}", String::from_utf8_lossy(&buf[..n]));
            let status = child.wait()?;
            if !status.success() {
                return Err(io::Error::other(format!("the child failed: {status}")));
            }
            Ok(())
        }
    }
}
