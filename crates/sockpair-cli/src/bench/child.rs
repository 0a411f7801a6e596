//! The child of `sockpair bench`: this same binary, started with a hidden subcommand,
//! its control socket handed over by `SpawnOptions`. It follows the parent's schedule:
//! echoes each round trip and acknowledges each burst.
//!
//! `unsafe` is allowed here for one call: `Socket::from_inherited`, which claims the
//! inherited control socket first thing in the child's `main`.
#![allow(unsafe_code)]

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::OwnedFd;

use anyhow::{Context, bail};
use sockpair::shm::Shared;
use sockpair::{Channel, Socket, Type};

use super::transport::{Impl, framed_recv, framed_send};
use super::{Schedule, WARM_UP};

/// The hidden subcommand that starts the child.
pub const MODE: &str = "__bench-child";

/// The child's ends of the transports: the async channel's and tokio-util's peers are
/// blocking channels too (the same frames on the wire).
struct Ends {
    stream: bool,
    raw: Socket,
    channel: Channel<Vec<u8>>,
    async_channel: Channel<Vec<u8>>,
    framed: Channel<Vec<u8>>,
    pipe_in: PipeReader,
    pipe_out: PipeWriter,
    shared: Channel<Shared>,
    buf: Vec<u8>,
    /// A channel's received message, a buffer handed back with each receive.
    received: Vec<u8>,
}

/// Runs the child until the parent closes the control socket.
pub fn child_main() -> anyhow::Result<std::process::ExitCode> {
    // SAFETY: called first thing in this process's main, before any thread exists; the
    // descriptor named by SOCKPAIR_FD is ours alone.
    let control =
        unsafe { Socket::from_inherited("SOCKPAIR_FD") }.context("take the control socket")?;
    let mut fds = Vec::new();
    let mut text = vec![0; 4096];
    let n = control.recv_with_fds(&mut text, &mut fds)?;
    let sizes: Vec<usize> = std::str::from_utf8(&text[..n])?
        .split(',')
        .map(|size| size.parse().context("sizes"))
        .collect::<anyhow::Result<_>>()?;
    let Ok(
        [
            raw,
            channel,
            async_channel,
            framed,
            pipe_in,
            pipe_out,
            shared,
        ],
    ) = <[OwnedFd; 7]>::try_from(fds)
    else {
        bail!("expected seven descriptors from the parent");
    };
    let mut shared: Channel<Shared> = Channel::new(Socket::from(shared))?;
    shared.accept_fds(true)?;
    let raw = Socket::from(raw);
    let largest = sizes.iter().copied().max().unwrap_or(1);
    let mut ends = Ends {
        stream: raw.ty()? == Type::STREAM,
        raw,
        channel: receiving(channel, largest)?,
        async_channel: receiving(async_channel, largest)?,
        framed: receiving(framed, largest)?,
        pipe_in: PipeReader::from(pipe_in),
        pipe_out: PipeWriter::from(pipe_out),
        shared,
        buf: vec![0; sizes.iter().max().copied().unwrap_or(1).max(1)],
        received: Vec::new(),
    };
    for &size in &sizes {
        for _ in 0..WARM_UP {
            ends.echo(Impl::Libc, size)?;
        }
    }
    let impls = Impl::for_type(ends.raw.ty()?);
    // Schedule after schedule, until the parent closes the control socket.
    loop {
        let n = control.recv(&mut text)?;
        if n == 0 {
            return Ok(std::process::ExitCode::SUCCESS);
        }
        let schedule = Schedule::decode(std::str::from_utf8(&text[..n])?)?;
        for _ in 0..schedule.rounds {
            for (s, &size) in schedule.sizes.iter().enumerate() {
                for &imp in impls.iter().filter(|imp| imp.measures(size)) {
                    for _ in 0..schedule.round_trips[s] {
                        ends.echo(imp, size)?;
                    }
                    ends.sink(imp, size, schedule.burst[s])?;
                }
            }
        }
    }
}

/// A channel on `fd` that takes messages of up to `largest` bytes.
fn receiving(fd: OwnedFd, largest: usize) -> anyhow::Result<Channel<Vec<u8>>> {
    let mut channel = Channel::new(Socket::from(fd))?;
    channel.max_frame_len(largest);
    Ok(channel)
}

impl Ends {
    /// The channel that serves `imp`.
    fn channel_of(&mut self, imp: Impl) -> &mut Channel<Vec<u8>> {
        match imp {
            Impl::AsyncChannel => &mut self.async_channel,
            Impl::TokioFramed => &mut self.framed,
            _ => &mut self.channel,
        }
    }

    /// Receives one message of `size` bytes on `imp`'s transport and sends it back.
    fn echo(&mut self, imp: Impl, size: usize) -> anyhow::Result<()> {
        let buf = &mut self.buf[..size];
        match imp {
            Impl::Libc | Impl::Socket if self.stream => {
                (&self.raw).read_exact(buf)?;
                (&self.raw).write_all(buf)?;
            }
            Impl::Libc | Impl::Socket => {
                let n = self.raw.recv(buf)?;
                self.raw.send(&buf[..n])?;
            }
            Impl::LibcFramed => {
                framed_recv(&self.raw, self.stream, buf)?;
                framed_send(&self.raw, self.stream, buf)?;
            }
            Impl::Channel | Impl::ChannelUnbatched | Impl::AsyncChannel | Impl::TokioFramed => {
                let mut received = std::mem::take(&mut self.received);
                let channel = self.channel_of(imp);
                if !channel.recv_into(&mut received)? {
                    bail!("the parent closed the channel");
                }
                channel.send(&received)?;
                self.received = received;
            }
            Impl::Pipe => {
                self.pipe_in.read_exact(buf)?;
                self.pipe_out.write_all(buf)?;
            }
            Impl::Shared => {
                let message = self.shared.recv()?.context("the parent closed")?;
                self.shared.send(&message)?;
            }
        }
        Ok(())
    }

    /// Receives `count` messages of `size` bytes, then acknowledges them with one byte
    /// (one message on the channel).
    fn sink(&mut self, imp: Impl, size: usize, count: usize) -> anyhow::Result<()> {
        let buf = &mut self.buf[..size];
        match imp {
            Impl::Libc | Impl::Socket => {
                for _ in 0..count {
                    if self.stream {
                        (&self.raw).read_exact(buf)?;
                    } else {
                        self.raw.recv(buf)?;
                    }
                }
                self.raw.send(b"k")?;
            }
            Impl::LibcFramed => {
                for _ in 0..count {
                    framed_recv(&self.raw, self.stream, buf)?;
                }
                self.raw.send(b"k")?;
            }
            Impl::Channel | Impl::ChannelUnbatched | Impl::AsyncChannel | Impl::TokioFramed => {
                let mut received = std::mem::take(&mut self.received);
                let channel = self.channel_of(imp);
                for _ in 0..count {
                    if !channel.recv_into(&mut received)? {
                        bail!("the parent closed the channel");
                    }
                }
                channel.send(&b"k".to_vec())?;
                self.received = received;
            }
            Impl::Pipe => {
                for _ in 0..count {
                    self.pipe_in.read_exact(buf)?;
                }
                self.pipe_out.write_all(b"k")?;
            }
            Impl::Shared => {
                let mut last = None;
                for _ in 0..count {
                    last = self.shared.recv()?;
                }
                // The acknowledgement: the last message back.
                self.shared.send(&last.context("the parent closed")?)?;
            }
        }
        Ok(())
    }
}
