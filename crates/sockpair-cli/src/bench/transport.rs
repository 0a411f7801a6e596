//! The four ways of talking to the child that `sockpair bench` compares, each a round
//! trip (send a message, receive it back) and a burst (send messages, receive one ack).

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::OwnedFd;

use anyhow::{Context, bail};
use sockpair::{Channel, Socket, Type, pair};

use crate::sys;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// Raw `send`/`recv` through libc on a socketpair: the baseline.
    Libc,
    /// sockpair's `Socket::send`/`recv`.
    Socket,
    /// sockpair's `Channel<Vec<u8>>`, with its framing.
    Channel,
    /// A pair of pipes, one each way.
    Pipe,
}

impl Impl {
    /// In the order measured and reported; the first is the baseline.
    pub const ALL: [Impl; 4] = [Impl::Libc, Impl::Socket, Impl::Channel, Impl::Pipe];

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Libc => "libc",
            Impl::Socket => "socket",
            Impl::Channel => "channel",
            Impl::Pipe => "pipe",
        }
    }
}

/// The parent's ends of every transport.
pub struct Transports {
    ty: Type,
    raw: Socket,
    channel: Channel<Vec<u8>>,
    pipe_out: PipeWriter,
    pipe_in: PipeReader,
    message: Vec<u8>,
    reply: Vec<u8>,
}

impl Transports {
    /// The parent's ends, and the child's: the raw pair's, the channel pair's, the read
    /// end of the pipe to the child and the write end of the pipe from it.
    pub fn new(ty: Type) -> anyhow::Result<(Transports, [OwnedFd; 4])> {
        let (raw, raw_child) = pair(ty).context("socketpair")?;
        let (channel, channel_child) = pair(ty).context("socketpair")?;
        let (to_child_read, pipe_out) = std::io::pipe().context("pipe")?;
        let (pipe_in, from_child_write) = std::io::pipe().context("pipe")?;
        let transports = Transports {
            ty,
            raw,
            channel: Channel::new(channel)?,
            pipe_out,
            pipe_in,
            message: Vec::new(),
            reply: vec![0; 1 << 20],
        };
        Ok((
            transports,
            [
                raw_child.into(),
                channel_child.into(),
                to_child_read.into(),
                from_child_write.into(),
            ],
        ))
    }

    /// Makes the message of the following round trips and bursts `size` bytes long.
    pub fn set_size(&mut self, size: usize) {
        self.message = vec![0x5a; size];
        if self.reply.len() < size {
            self.reply.resize(size, 0);
        }
    }

    /// Sends the message and receives it back.
    pub fn round_trip(&mut self, imp: Impl) -> anyhow::Result<()> {
        let message = &self.message[..];
        let reply = &mut self.reply[..message.len()];
        match (imp, self.ty == Type::STREAM) {
            (Impl::Libc, true) => {
                libc_send_all(&self.raw, message)?;
                libc_recv_exact(&self.raw, reply)?;
            }
            (Impl::Libc, false) => {
                sys::send(&self.raw, message)?;
                sys::recv(&self.raw, reply)?;
            }
            (Impl::Socket, true) => {
                (&self.raw).write_all(message)?;
                (&self.raw).read_exact(reply)?;
            }
            (Impl::Socket, false) => {
                self.raw.send(message)?;
                self.raw.recv(reply)?;
            }
            (Impl::Channel, _) => {
                self.channel.send(&self.message)?;
                self.channel
                    .recv()?
                    .context("the child closed its channel")?;
            }
            (Impl::Pipe, _) => {
                self.pipe_out.write_all(message)?;
                self.pipe_in.read_exact(reply)?;
            }
        }
        Ok(())
    }

    /// Sends the message `count` times one way, then waits for the child's ack.
    pub fn burst(&mut self, imp: Impl, count: usize) -> anyhow::Result<()> {
        let message = &self.message[..];
        let stream = self.ty == Type::STREAM;
        let mut ack = [0];
        match imp {
            Impl::Libc => {
                for _ in 0..count {
                    if stream {
                        libc_send_all(&self.raw, message)?;
                    } else {
                        sys::send(&self.raw, message)?;
                    }
                }
                libc_recv_exact(&self.raw, &mut ack)?;
            }
            Impl::Socket => {
                for _ in 0..count {
                    if stream {
                        (&self.raw).write_all(message)?;
                    } else {
                        self.raw.send(message)?;
                    }
                }
                (&self.raw).read_exact(&mut ack)?;
            }
            Impl::Channel => {
                for _ in 0..count {
                    self.channel.send(&self.message)?;
                }
                self.channel
                    .recv()?
                    .context("the child closed its channel")?;
            }
            Impl::Pipe => {
                for _ in 0..count {
                    self.pipe_out.write_all(message)?;
                }
                self.pipe_in.read_exact(&mut ack)?;
            }
        }
        Ok(())
    }
}

/// All of `buf` through libc `send`.
pub fn libc_send_all(socket: &Socket, mut buf: &[u8]) -> anyhow::Result<()> {
    while !buf.is_empty() {
        let n = sys::send(socket, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Exactly `buf.len()` bytes through libc `recv`.
pub fn libc_recv_exact(socket: &Socket, mut buf: &mut [u8]) -> anyhow::Result<()> {
    while !buf.is_empty() {
        let n = sys::recv(socket, buf)?;
        if n == 0 {
            bail!("the child closed its end");
        }
        buf = &mut buf[n..];
    }
    Ok(())
}
