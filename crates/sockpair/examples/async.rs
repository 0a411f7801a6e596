// An async parent on tokio and a blocking child, which is this same program started
// again with its end at fd 3 (SOCKPAIR_FD=3). They exchange the seed's two greetings as
// framed messages, the parent passes the child a descriptor with the first one, and the
// parent awaits the child's exit without blocking the runtime.
//
// Run it with `cargo run -p sockpair --features tokio --example async`.
use std::io::Write;
use std::os::fd::AsFd;
use std::time::Duration;

use sockpair::tokio::AsyncChannel;
use sockpair::{Channel, Program, Socket, SpawnOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("SOCKPAIR_FD").is_some() {
        return child();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(parent())
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let (mut child, socket) = SpawnOptions::new()
        .kill_on_drop(true) // should anything below fail
        .spawn_program(&Program::new(me))?;
    let mut channel: AsyncChannel<String> = AsyncChannel::new(socket)?;
    // The child prints through our stdout, handed to it as a descriptor.
    let stdout = std::io::stdout();
    channel
        .send_with_fds("Hello from parent", &[stdout.as_fd()])
        .await?;
    let reply = channel.recv().await?.ok_or("the child closed its end")?;
    println!("Parent received: {reply}");
    drop(channel); // the child reads the end of the stream and exits
    let status = child
        .wait_timeout_async(Duration::from_secs(10))
        .await?
        .ok_or("the child did not exit")?;
    assert!(status.success(), "child: {status}");
    Ok(())
}

fn child() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: first thing in main, before any thread exists; nothing else here owns the
    // descriptor that SOCKPAIR_FD names.
    let socket = unsafe { Socket::from_inherited("SOCKPAIR_FD")? };
    let mut channel: Channel<String> = Channel::new(socket)?;
    let mut fds = Vec::new();
    let greeting = channel.recv_with_fds(&mut fds)?.ok_or("no greeting")?;
    let mut out = std::fs::File::from(fds.pop().ok_or("no descriptor came")?);
    writeln!(out, "Child received: {greeting}")?;
    drop(out);
    channel.send("Hello from child")?;
    while channel.recv()?.is_some() {} // until the parent is done
    Ok(())
}
