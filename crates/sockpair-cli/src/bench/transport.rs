//! The ways of talking to the child that `sockpair bench` compares, each a round trip
//! (send a message, receive it back) and a burst (send messages, receive one ack).

use std::io::{PipeReader, PipeWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use sockpair::shm::{Shared, SharedMut};
use sockpair::tokio::AsyncChannel;
use sockpair::{Channel, Socket, Type, pair};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::sys;

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// Raw `send`/`recv` through libc on a socketpair: the baseline (no header, no
    /// room for descriptors: less work than a channel does, a floor).
    Libc,
    /// The channel's frames by hand: a 4-byte big-endian length and the payload in one
    /// `sendmsg`, read with `recvmsg` with room for descriptors (on records, no header):
    /// the limit a framed, descriptor-carrying channel can reach.
    LibcFramed,
    /// sockpair's `Socket::send`/`recv`.
    Socket,
    /// sockpair's `Channel<Vec<u8>>`, with its framing; its burst is batched (`feed`
    /// each message, `flush` once).
    Channel,
    /// The same channel, its burst one `send` per message.
    ChannelUnbatched,
    /// sockpair's `AsyncChannel<Vec<u8>>` on a current-thread tokio runtime; its burst
    /// is batched (`feed` each message, `flush` once).
    AsyncChannel,
    /// tokio's `UnixStream` in tokio-util's `Framed<_, LengthDelimitedCodec>` (the same
    /// 4-byte big-endian frames): the best a tokio user has without sockpair. Streams
    /// only.
    TokioFramed,
    /// A pair of pipes, one each way.
    Pipe,
    /// sockpair's `Channel<Shared>`: the message is a sealed memfd (made and filled
    /// once), handed over, its bytes neither copied nor read. Sizes from 1 MiB.
    Shared,
}

impl Impl {
    /// In the order measured and reported; the first is the baseline.
    pub const ALL: [Impl; 9] = [
        Impl::Libc,
        Impl::LibcFramed,
        Impl::Socket,
        Impl::Channel,
        Impl::ChannelUnbatched,
        Impl::AsyncChannel,
        Impl::TokioFramed,
        Impl::Pipe,
        Impl::Shared,
    ];

    /// The smallest message the `shared` row measures.
    pub const SHARED_FROM: usize = 1 << 20;

    /// Whether it is measured at messages of `size` bytes (`shared` from 1 MiB).
    pub fn measures(self, size: usize) -> bool {
        self != Impl::Shared || size >= Impl::SHARED_FROM
    }

    /// Those measured on pairs of `ty`: tokio's `UnixStream` is a stream only.
    pub fn for_type(ty: Type) -> Vec<Impl> {
        Impl::ALL
            .into_iter()
            .filter(|&imp| ty == Type::STREAM || imp != Impl::TokioFramed)
            .collect()
    }

    /// Whether its burst is batched: many messages queued, one flush.
    pub fn batched(self) -> bool {
        matches!(self, Impl::Channel | Impl::AsyncChannel | Impl::TokioFramed)
    }

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Libc => "libc",
            Impl::LibcFramed => "libc-framed",
            Impl::Socket => "socket",
            Impl::Channel => "channel",
            Impl::ChannelUnbatched => "channel-unbatched",
            Impl::AsyncChannel => "async-channel",
            Impl::TokioFramed => "tokio-framed",
            Impl::Pipe => "pipe",
            Impl::Shared => "shared",
        }
    }
}

/// The parent's ends of every transport.
pub struct Transports {
    ty: Type,
    raw: Socket,
    channel: Channel<Vec<u8>>,
    /// The runtime the async transports run on, in this thread.
    runtime: tokio::runtime::Runtime,
    async_channel: AsyncChannel<Vec<u8>>,
    framed: Framed<tokio::net::UnixStream, LengthDelimitedCodec>,
    pipe_out: PipeWriter,
    pipe_in: PipeReader,
    shared: Channel<Shared>,
    /// The message as a frozen `Shared` (sizes from 1 MiB).
    shared_message: Option<Shared>,
    message: Vec<u8>,
    /// The message as tokio-util sends it.
    bytes: Bytes,
    reply: Vec<u8>,
    /// The channel's received message, a buffer handed back with each receive.
    received: Vec<u8>,
}

impl Transports {
    /// The parent's ends, and the child's: the raw pair's, the channel pair's, the async
    /// channel pair's, the framed (stream) pair's, the read end of the pipe to the child
    /// and the write end of the pipe from it.
    pub fn new(ty: Type, largest: usize) -> anyhow::Result<(Transports, [OwnedFd; 7])> {
        let (raw, raw_child) = pair(ty).context("socketpair")?;
        let (shared, shared_child) = pair(ty).context("socketpair")?;
        let mut shared: Channel<Shared> = Channel::new(shared)?;
        shared.accept_fds(true)?;
        let (channel, channel_child) = pair(ty).context("socketpair")?;
        let (async_channel, async_child) = pair(ty).context("socketpair")?;
        let (framed, framed_child) = pair(Type::STREAM).context("socketpair")?;
        let (to_child_read, pipe_out) = std::io::pipe().context("pipe")?;
        let (pipe_in, from_child_write) = std::io::pipe().context("pipe")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("start a tokio runtime")?;
        let (async_channel, framed) = {
            let _inside = runtime.enter();
            let framed = std::os::unix::net::UnixStream::from(framed);
            framed.set_nonblocking(true)?;
            (
                {
                    let mut channel = AsyncChannel::new(async_channel)?;
                    channel.max_frame_len(largest);
                    channel
                },
                Framed::new(
                    tokio::net::UnixStream::from_std(framed)?,
                    LengthDelimitedCodec::builder()
                        .max_frame_length(largest)
                        .new_codec(),
                ),
            )
        };
        let transports = Transports {
            ty,
            raw,
            channel: {
                let mut channel = Channel::new(channel)?;
                channel.max_frame_len(largest);
                channel
            },
            runtime,
            async_channel,
            framed,
            pipe_out,
            pipe_in,
            shared,
            shared_message: None,
            message: Vec::new(),
            bytes: Bytes::new(),
            reply: vec![0; 1 << 20],
            received: Vec::new(),
        };
        Ok((
            transports,
            [
                raw_child.into(),
                channel_child.into(),
                async_child.into(),
                framed_child.into(),
                to_child_read.into(),
                from_child_write.into(),
                shared_child.into(),
            ],
        ))
    }

    /// `count` round trips on `imp`, each timed (ns) into `samples`; the async ones all
    /// inside one turn of the runtime, as an async program would run them.
    pub fn timed_round_trips(
        &mut self,
        imp: Impl,
        count: usize,
        samples: &mut Vec<u64>,
    ) -> anyhow::Result<()> {
        let message = &self.message;
        match imp {
            Impl::AsyncChannel => {
                let channel = &mut self.async_channel;
                self.runtime.block_on(async {
                    for _ in 0..count {
                        let start = Instant::now();
                        channel.send(message).await?;
                        channel
                            .recv()
                            .await?
                            .context("the child closed its channel")?;
                        samples.push(start.elapsed().as_nanos() as u64);
                    }
                    Ok(())
                })
            }
            Impl::TokioFramed => {
                let (framed, bytes) = (&mut self.framed, &self.bytes);
                self.runtime.block_on(async {
                    for _ in 0..count {
                        let start = Instant::now();
                        framed.send(bytes.clone()).await?;
                        framed.next().await.context("the child closed its end")??;
                        samples.push(start.elapsed().as_nanos() as u64);
                    }
                    Ok(())
                })
            }
            _ => {
                for _ in 0..count {
                    let start = Instant::now();
                    self.round_trip(imp)?;
                    samples.push(start.elapsed().as_nanos() as u64);
                }
                Ok(())
            }
        }
    }

    /// Makes the message of the following round trips and bursts `size` bytes long.
    pub fn set_size(&mut self, size: usize) -> anyhow::Result<()> {
        self.shared_message = None; // its pages go before the next are made
        if Impl::Shared.measures(size) {
            let mut buffer = SharedMut::new(size)?;
            buffer.write_all(&vec![0x5a; size])?;
            self.shared_message = Some(buffer.freeze()?);
        }
        self.message = vec![0x5a; size];
        self.bytes = Bytes::from(self.message.clone());
        if self.reply.len() < size {
            self.reply.resize(size, 0);
        }
        Ok(())
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
            (Impl::LibcFramed, stream) => {
                framed_send(&self.raw, stream, message)?;
                framed_recv(&self.raw, stream, reply)?;
            }
            (Impl::Socket, true) => {
                (&self.raw).write_all(message)?;
                (&self.raw).read_exact(reply)?;
            }
            (Impl::Socket, false) => {
                self.raw.send(message)?;
                self.raw.recv(reply)?;
            }
            (Impl::Channel | Impl::ChannelUnbatched, _) => {
                // Into a buffer of ours, as libc-framed reads into one.
                self.channel.send(&self.message)?;
                if !self.channel.recv_into(&mut self.received)? {
                    bail!("the child closed its channel");
                }
            }
            (Impl::AsyncChannel | Impl::TokioFramed, _) => {
                let mut one = Vec::with_capacity(1);
                self.timed_round_trips(imp, 1, &mut one)?;
            }
            (Impl::Pipe, _) => {
                self.pipe_out.write_all(message)?;
                self.pipe_in.read_exact(reply)?;
            }
            (Impl::Shared, _) => {
                let message = shared_message(&self.shared_message)?;
                self.shared.send(message)?;
                self.shared
                    .recv()?
                    .context("the child closed its channel")?;
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
            Impl::LibcFramed => {
                for _ in 0..count {
                    framed_send(&self.raw, stream, message)?;
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
                // `feed` then one `flush`, as tokio-framed's burst.
                for _ in 0..count {
                    self.channel.feed(&self.message)?;
                }
                self.channel.flush()?;
                self.channel
                    .recv()?
                    .context("the child closed its channel")?;
            }
            Impl::ChannelUnbatched => {
                for _ in 0..count {
                    self.channel.send(&self.message)?;
                }
                self.channel
                    .recv()?
                    .context("the child closed its channel")?;
            }
            Impl::AsyncChannel => {
                let channel = &mut self.async_channel;
                self.runtime.block_on(async {
                    for _ in 0..count {
                        channel.feed(message).await?;
                    }
                    channel.flush().await?;
                    channel
                        .recv()
                        .await?
                        .context("the child closed its channel")?;
                    anyhow::Ok(())
                })?;
            }
            Impl::TokioFramed => {
                let (framed, bytes) = (&mut self.framed, &self.bytes);
                self.runtime.block_on(async {
                    for _ in 0..count {
                        // `feed` then one `flush`, as a tokio user writes a burst.
                        framed.feed(bytes.clone()).await?;
                    }
                    SinkExt::<Bytes>::flush(framed).await?;
                    framed.next().await.context("the child closed its end")??;
                    anyhow::Ok(())
                })?;
            }
            Impl::Pipe => {
                for _ in 0..count {
                    self.pipe_out.write_all(message)?;
                }
                self.pipe_in.read_exact(&mut ack)?;
            }
            Impl::Shared => {
                let message = shared_message(&self.shared_message)?;
                for _ in 0..count {
                    self.shared.send(message)?;
                }
                self.shared
                    .recv()?
                    .context("the child closed its channel")?;
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

/// One frame written by hand: on a stream, the 4-byte big-endian length and the payload
/// in one `sendmsg` (the rest with `send` if the socket took part of it); on records,
/// the payload alone.
pub fn framed_send(socket: &Socket, stream: bool, payload: &[u8]) -> anyhow::Result<()> {
    if !stream {
        sys::sendmsg(socket, &[], payload)?;
        return Ok(());
    }
    let header = (payload.len() as u32).to_be_bytes();
    let sent = sys::sendmsg(socket, &header, payload)?;
    if sent < header.len() {
        libc_send_all(socket, &header[sent..])?;
        libc_send_all(socket, payload)?;
    } else {
        libc_send_all(socket, &payload[sent - header.len()..])?;
    }
    Ok(())
}

/// One frame of `payload.len()` bytes read by hand: header and payload with one
/// `recvmsg` with room for descriptors, more while the frame is not whole (on records,
/// the record alone).
pub fn framed_recv(socket: &Socket, stream: bool, payload: &mut [u8]) -> anyhow::Result<()> {
    if !stream {
        sys::recvmsg(socket, &mut [], payload)?;
        return Ok(());
    }
    let mut header = [0; 4];
    let (mut got_header, mut got) = (0, 0);
    while got_header < 4 || got < payload.len() {
        let n = sys::recvmsg(socket, &mut header[got_header..], &mut payload[got..])?;
        if n == 0 {
            bail!("the child closed its end");
        }
        let into_header = n.min(4 - got_header);
        got_header += into_header;
        got += n - into_header;
    }
    if u32::from_be_bytes(header) as usize != payload.len() {
        bail!("a frame of another length came");
    }
    Ok(())
}

/// The message as a `Shared`, for the `shared` row.
fn shared_message(message: &Option<Shared>) -> anyhow::Result<&Shared> {
    message
        .as_ref()
        .context("the shared row measures messages from 1 MiB")
}
