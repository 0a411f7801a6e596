// A parent starts a program (here: a copy of itself) with one end of a pair at fd 3,
// announced as SOCKPAIR_FD=3; the child takes it with Socket::from_inherited. Both
// talk, the parent reads EOF when the child is done, and reaps it.
//
// Run it with `cargo run -p sockpair --example spawn`.
use std::io::{self, Read, Write};
use std::net::Shutdown;

use sockpair::{Program, Socket, SpawnOptions};

fn main() -> io::Result<()> {
    if std::env::var_os("SOCKPAIR_FD").is_some() {
        return child();
    }
    let (mut child, mut socket) =
        SpawnOptions::new().spawn_program(&Program::new(std::env::current_exe()?))?;
    socket.write_all(b"ping")?;
    socket.shutdown(Shutdown::Write)?; // the child reads EOF after "ping"
    let mut reply = String::new();
    socket.read_to_string(&mut reply)?; // EOF: the child closed its end
    println!("parent got: {reply}");
    let status = child.wait()?;
    println!("child exited: {status}");
    Ok(())
}

fn child() -> io::Result<()> {
    // SAFETY: first thing in main, before any thread exists; nothing else here owns the
    // descriptor that SOCKPAIR_FD names.
    let mut socket = unsafe { Socket::from_inherited("SOCKPAIR_FD")? };
    let mut request = String::new();
    socket.read_to_string(&mut request)?;
    write!(
        socket,
        "{request} -> pong from child {}",
        std::process::id()
    )
}
