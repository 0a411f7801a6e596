//! [`Channel`]: whole messages, typed, with descriptors, over one end of a pair.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::error::{Error, ErrorKind};
use crate::fds::MAX_FDS_PER_MESSAGE;
use crate::frame::{DEFAULT_MAX_FRAME_LEN, Decoder, Frame, Framing, Payload, frame_parts, length};
use crate::memfd;
use crate::message::Message;
use crate::socket::Socket;
use crate::sys;
use crate::sys::recvmsg::recvmsg_append;
use crate::types::Type;

/// Frames with payloads up to this size are copied into one buffer to be sent.
const GATHER_BELOW: usize = 4096;

/// Length frames with payloads up to this size are built on the stack.
const TINY: usize = 124;

/// Receive buffer for records: at least this, or the socket's buffer sizes if larger.
const MIN_RECORD_BUFFER: usize = 256 * 1024;

/// Whole messages over one end of a pair: `Tx` out, `Rx` in.
///
/// The framing follows the socket: on a stream, [`Framing::Length`] (`[u32 big-endian
/// length][payload]`, which Python's `Connection.send_bytes`/`recv_bytes` speak); on
/// seqpacket and datagram sockets, [`Framing::Records`] (one message per record, no
/// header; a message too large for a record travels as a sealed `memfd`). Choose
/// [`Framing::Lines`] with [`with_framing`](Channel::with_framing) for Node's `json`
/// IPC. The wire format is specified in `docs/wire-format.md`.
///
/// # Examples
///
/// ```
/// use sockpair::{pair, Channel, Type};
///
/// let (a, b) = pair(Type::STREAM)?;
/// let mut a: Channel<String> = Channel::new(a)?;
/// let mut b: Channel<String> = Channel::new(b)?;
/// a.send(&"hello".to_string())?;
/// assert_eq!(b.recv()?, Some("hello".to_string()));
/// drop(a);
/// assert_eq!(b.recv()?, None); // a clean end of stream between messages
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Who may block on what (the full-duplex rule)
///
/// A send blocks while the peer's receive buffer is full, that is, until the peer reads.
/// So two processes that both send large messages before either receives can wait for
/// each other forever. The safe pattern is **request/reply**: one side sends a request
/// and then receives the reply; the other receives, then replies; neither sends a second
/// message before reading the answer to the first. If both sides must send freely,
/// receive on a thread of its own (each end can be [`try_clone`](Socket::try_clone)d
/// into a second `Channel`). And to bound every wait, set
/// [`read_timeout`](Channel::read_timeout) and [`write_timeout`](Channel::write_timeout):
/// a peer that stops reading or answering then costs an [`ErrorKind::TimedOut`], never a
/// hang. A peer that dies ends the channel: `recv` returns `Ok(None)` (or an error inside
/// a frame), `send` fails with `EPIPE`.
pub struct Channel<Tx, Rx = Tx> {
    socket: Socket,
    framing: Framing,
    /// The byte-stream decoder (not used for records).
    decoder: Decoder,
    max_frame_len: usize,
    /// Whether the socket is seqpacket, whose EOF reads like an empty record.
    seqpacket: bool,
    /// Whether descriptors that come with messages are taken ([`Channel::accept_fds`]).
    accept_fds: bool,
    record_buffer: Vec<u8>,
    /// A record whose refused descriptors were reported first, delivered next.
    pending_record: Option<Vec<u8>>,
    /// Descriptors received on a byte stream, with the stream offsets of the read that
    /// brought them (see [`Channel::take_fds`]).
    fds_in: VecDeque<(Range<u64>, Vec<OwnedFd>)>,
    scratch: Vec<u8>,
    /// Frames gathered by [`Channel::send_batch`].
    batch: Vec<u8>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// A send failed part-way through a frame: the peer's stream is out of step.
    send_broken: bool,
    /// Whether this end sent since it last read (see `recv_frame`).
    sent_since_read: bool,
    types: PhantomData<fn(&Tx) -> Rx>,
}

impl<Tx: Message, Rx: Message> Channel<Tx, Rx> {
    /// A channel over `socket`, framed as its type suggests: [`Framing::Length`] on a
    /// stream, [`Framing::Records`] on seqpacket and datagram sockets.
    ///
    /// # Errors
    ///
    /// The kernel's error from asking the socket its type.
    pub fn new(socket: Socket) -> io::Result<Self> {
        let framing = if socket.ty()? == Type::STREAM {
            Framing::Length
        } else {
            Framing::Records
        };
        Self::with_framing(socket, framing)
    }

    /// A channel over `socket` with the given framing.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for byte-stream framings on a seqpacket or datagram
    /// socket (a read shorter than a record loses the rest of it) and for
    /// [`Framing::Records`] on a stream; otherwise the kernel's error.
    pub fn with_framing(socket: Socket, framing: Framing) -> io::Result<Self> {
        let ty = socket.ty()?;
        if (framing == Framing::Records) == (ty == Type::STREAM) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{framing:?} framing does not fit a {ty:?} socket"),
            ));
        }
        let seqpacket = ty == Type::SEQPACKET;
        // Acceptance belongs to the socket: where the kernel knows it (SO_PASSRIGHTS,
        // Linux 6.16), it is read, never changed; before that, descriptors always arrive.
        let accept_fds = sys::pass_rights(&socket)?.unwrap_or(true);
        if seqpacket {
            // Every record then carries a timestamp, and the end of the stream none:
            // that tells an empty record from EOF, which both read as 0 bytes.
            sys::set_receive_timestamps(&socket)?;
        }
        Ok(Channel {
            decoder: Decoder::new(if framing == Framing::Records {
                Framing::Length
            } else {
                framing
            }),
            socket,
            framing,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            seqpacket,
            accept_fds,
            record_buffer: Vec::new(),
            pending_record: None,
            fds_in: VecDeque::new(),
            scratch: Vec::new(),
            batch: Vec::new(),
            read_timeout: None,
            write_timeout: None,
            send_broken: false,
            sent_since_read: false,
            types: PhantomData,
        })
    }

    /// The largest message accepted (default [`DEFAULT_MAX_FRAME_LEN`], 64 MiB). A
    /// larger one is refused before anything is allocated for it, with
    /// [`ErrorKind::TooLarge`]; on a byte stream the channel then stops receiving
    /// ([`ErrorKind::Unusable`]), since what follows cannot be trusted to be a frame.
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.max_frame_len = max;
        self.decoder.set_max(max);
        self
    }

    /// The longest a [`recv`](Channel::recv) may wait for a whole message (default: no
    /// limit). When it passes, `recv` fails with [`ErrorKind::TimedOut`]; what had
    /// arrived of the message is kept, and the next `recv` continues it.
    pub fn read_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.read_timeout = timeout;
        self
    }

    /// The longest a [`send`](Channel::send) may wait for the peer to make room (default:
    /// no limit). When it passes, `send` fails with [`ErrorKind::TimedOut`]; if part of
    /// the message had gone out, the channel stops sending ([`ErrorKind::Unusable`]).
    pub fn write_timeout(&mut self, timeout: Option<Duration>) -> &mut Self {
        self.write_timeout = timeout;
        self
    }

    /// Whether this end takes descriptors that come with messages.
    ///
    /// Acceptance belongs to the socket, not to the channel: a new channel follows its
    /// socket (Linux 6.16's `SO_PASSRIGHTS`, on for a new pair, and set before the
    /// child exists by [`SpawnOptions::accept_fds`](crate::SpawnOptions::accept_fds)),
    /// and this call changes the socket, for every channel and copy of it.
    ///
    /// A channel that does not accept descriptors keeps them out: on a stream the kernel
    /// refuses them, so the peer's [`send_with_fds`](Channel::send_with_fds) fails at
    /// once with [`ErrorKind::Fds`] and nothing of its message is sent. On seqpacket and
    /// datagram sockets, where large messages travel as a descriptor, and on kernels
    /// before 6.16, they arrive, are closed, and this end's next receive reports
    /// [`ErrorKind::Fds`] (the message itself comes with the receive after). Nothing is
    /// ever dropped without an error somewhere. Descriptors refused earlier are not
    /// delivered later.
    pub fn accept_fds(&mut self, accept: bool) -> &mut Self {
        if self.framing != Framing::Records {
            // Before Linux 6.16 the kernel cannot refuse: the channel's own check remains.
            let _ = sys::set_pass_rights(&self.socket, accept);
        }
        self.accept_fds = accept;
        self
    }

    /// The framing in use.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The socket underneath.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Sends one message.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`] if the message cannot be encoded (nothing is sent),
    /// [`ErrorKind::TimedOut`], [`ErrorKind::Unusable`] after a partial send, or
    /// [`ErrorKind::Io`] with the kernel's error (`EPIPE` once the peer is gone).
    pub fn send(&mut self, message: &Tx) -> Result<(), Error> {
        self.send_with_fds(message, &[])
    }

    /// Sends one message with descriptors; the receiver gets exactly these, in this
    /// order, with this message (see [`recv_with_fds`](Channel::recv_with_fds)), if it
    /// [accepts descriptors](Channel::accept_fds).
    ///
    /// ```
    /// use std::os::fd::AsFd;
    /// use sockpair::{pair, Channel, Type};
    ///
    /// let (a, b) = pair(Type::STREAM)?;
    /// let (mut a, mut b): (Channel<String>, Channel<String>) = (Channel::new(a)?, Channel::new(b)?);
    /// let (_read, write) = std::io::pipe()?;
    /// a.send_with_fds(&"a pipe for you".into(), &[write.as_fd()])?;
    /// let mut fds = Vec::new();
    /// assert_eq!(b.recv_with_fds(&mut fds)?.as_deref(), Some("a pipe for you"));
    /// assert_eq!(fds.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Channel::send); also [`ErrorKind::Fds`] for more than
    /// [`MAX_FDS_PER_MESSAGE`](crate::MAX_FDS_PER_MESSAGE) descriptors, or when the peer
    /// refuses descriptors (nothing is sent then).
    pub fn send_with_fds(&mut self, message: &Tx, fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(Error::new(
                ErrorKind::Fds,
                format!(
                    "{} descriptors in one message; at most {MAX_FDS_PER_MESSAGE}",
                    fds.len()
                ),
            ));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = match message.encode(&mut scratch) {
            Ok(payload) => self.send_payload(payload, fds),
            Err(err) => Err(err),
        };
        self.scratch = scratch;
        result
    }

    /// Sends several messages with as few system calls as possible: on a byte stream
    /// their frames are gathered into one buffer and written together (one `sendmsg`
    /// while the socket has room), which multiplies the message rate for small
    /// messages. On records each message is still one record, sent one by one.
    ///
    /// # Errors
    ///
    /// As [`send`](Channel::send). If one message cannot be encoded, none is sent.
    pub fn send_batch<'m>(
        &mut self,
        messages: impl IntoIterator<Item = &'m Tx>,
    ) -> Result<(), Error>
    where
        Tx: 'm,
    {
        if self.framing == Framing::Records {
            return messages
                .into_iter()
                .try_for_each(|message| self.send(message));
        }
        self.sent_since_read = true;
        let mut batch = std::mem::take(&mut self.batch);
        let mut scratch = std::mem::take(&mut self.scratch);
        batch.clear();
        let gathered = messages.into_iter().try_for_each(|message| {
            scratch.clear();
            let mut header = [0; length::MAX_HEADER];
            let payload = message.encode(&mut scratch)?;
            for part in frame_parts(self.framing, payload, &mut header)? {
                batch.extend_from_slice(part);
            }
            Ok(())
        });
        let result =
            gathered.and_then(|()| self.send_parts(&mut [IoSlice::new(&batch)], &[], false));
        self.batch = batch;
        self.scratch = scratch;
        result
    }

    fn send_payload(&mut self, payload: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
        self.sent_since_read = true;
        if self.framing == Framing::Records {
            let deadline = self.write_timeout.map(|timeout| Instant::now() + timeout);
            return self.send_record(payload, fds, deadline);
        }
        let lean = fds.is_empty() && self.write_timeout.is_none() && !self.send_broken;
        if lean && self.framing == Framing::Length && payload.len() <= TINY {
            // The most common message of all, on the shortest path: built on the stack
            // and written with one `send`.
            let mut frame = [0; TINY + 4];
            let len = payload.len() + 4;
            frame[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
            frame[4..len].copy_from_slice(payload);
            match self.socket.send(&frame[..len]) {
                Ok(n) if n == len => return Ok(()),
                Ok(n) => {
                    self.batch.clear();
                    self.batch.extend_from_slice(&frame[n..len]);
                    return self.send_rest_of_batch(0, true);
                }
                Err(err) if err.kind() != io::ErrorKind::Interrupted => return Err(err.into()),
                Err(_) => {} // nothing went out: the general path retries
            }
        }
        let mut header = [0; length::MAX_HEADER];
        let parts = frame_parts(self.framing, payload, &mut header)?;
        if !fds.is_empty() || payload.len() > GATHER_BELOW {
            return self.send_parts(&mut parts.map(IoSlice::new), fds, false);
        }
        // A small frame is cheaper copied into one buffer and sent with a plain `send`
        // than gathered by `sendmsg`; without a deadline one call usually does it all,
        // and this common case is kept lean.
        let frame = &mut self.batch;
        frame.clear();
        for part in parts {
            frame.extend_from_slice(part);
        }
        if lean {
            match self.socket.send(frame) {
                Ok(n) if n == frame.len() => return Ok(()),
                Ok(n) => return self.send_rest_of_batch(n, true),
                Err(err) if err.kind() != io::ErrorKind::Interrupted => return Err(err.into()),
                Err(_) => {} // nothing went out: the general path retries
            }
        }
        self.send_rest_of_batch(0, false)
    }

    /// Sends what `batch` holds from byte `from` on; `sent_any` if part of its frame
    /// already went out.
    fn send_rest_of_batch(&mut self, from: usize, sent_any: bool) -> Result<(), Error> {
        let batch = std::mem::take(&mut self.batch);
        let result = self.send_parts(&mut [IoSlice::new(&batch[from..])], &[], sent_any);
        self.batch = batch;
        result
    }

    /// Writes all of `slices` (one or more whole frames, or the rest of one if
    /// `sent_any`), `fds` with the first byte.
    fn send_parts(
        &mut self,
        slices: &mut [IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
        sent_any: bool,
    ) -> Result<(), Error> {
        if self.send_broken {
            return Err(Error::new(
                ErrorKind::Unusable,
                "an earlier send stopped part-way through a message; the channel no longer sends",
            ));
        }
        let deadline = self.write_timeout.map(|timeout| Instant::now() + timeout);
        let mut slices = slices;
        let mut fds = fds;
        let mut sent_any = sent_any;
        while !slices.is_empty() && !slices.iter().all(|slice| slice.is_empty()) {
            match io_with(
                &self.socket,
                Wait::until(deadline),
                PollFlags::OUT,
                |socket, flags| socket.send_msg(slices, fds, send_flags(flags)),
            ) {
                Ok(n) => {
                    fds = &[]; // they went with the first byte
                    sent_any = true;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(err) => {
                    // Anything already out leaves the peer inside a frame.
                    self.send_broken = sent_any;
                    return Err(peer_refused(err, fds));
                }
            }
        }
        Ok(())
    }

    fn send_record(
        &mut self,
        payload: &[u8],
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        if payload.is_empty() && fds.last().is_some_and(|&fd| memfd::is_sealed(fd)) {
            return Err(Error::new(
                ErrorKind::Encode,
                "an empty message whose last descriptor is a sealed memfd is how a large message \
                 is marked on records; add a byte or put another descriptor last",
            ));
        }
        let sent = io_with(
            &self.socket,
            Wait::until(deadline),
            PollFlags::OUT,
            |socket, flags| socket.send_msg(&[IoSlice::new(payload)], fds, send_flags(flags)),
        );
        match sent {
            Err(err) if raw_errno(&err) == Some(libc::EMSGSIZE) => {}
            other => return other.map(drop).map_err(|err| peer_refused(err, fds)),
        }
        // Too large for one record: hand it over as a sealed memfd.
        if fds.len() == MAX_FDS_PER_MESSAGE {
            return Err(Error::new(
                ErrorKind::Fds,
                "a message too large for a record needs one descriptor more than the 253 given",
            ));
        }
        let sealed = memfd::seal(payload)?;
        let mut all: Vec<BorrowedFd<'_>> = fds.to_vec();
        all.push(sealed.as_fd());
        io_with(
            &self.socket,
            Wait::until(deadline),
            PollFlags::OUT,
            |socket, flags| socket.send_msg(&[], &all, send_flags(flags)),
        )
        .map(drop)
        .map_err(|err| peer_refused(err, &all))
    }

    /// Receives one message; `Ok(None)` at a clean end of stream (the peer closed or
    /// shut down writing, between messages). On a channel that
    /// [accepts descriptors](Channel::accept_fds), those that came with the message are
    /// closed: use [`recv_with_fds`](Channel::recv_with_fds) to keep them.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::UnexpectedEof`] if the stream ends inside a message,
    /// [`ErrorKind::TooLarge`], [`ErrorKind::BadHeader`], [`ErrorKind::Decode`],
    /// [`ErrorKind::Fds`], [`ErrorKind::TimedOut`], [`ErrorKind::Unusable`] after a
    /// framing error, or [`ErrorKind::Io`] with the kernel's error.
    pub fn recv(&mut self) -> Result<Option<Rx>, Error> {
        self.recv_with_fds(&mut Vec::new())
    }

    /// Receives one message and appends the descriptors that came with it to `fds`
    /// (close-on-exec, in the order they were sent). The channel must
    /// [accept descriptors](Channel::accept_fds), or none come.
    ///
    /// # Errors
    ///
    /// As [`recv`](Channel::recv).
    pub fn recv_with_fds(&mut self, fds: &mut Vec<OwnedFd>) -> Result<Option<Rx>, Error> {
        let deadline = self.read_timeout.map(|timeout| Instant::now() + timeout);
        let (payload, buffer) = if self.framing == Framing::Records {
            (self.recv_record(fds, deadline)?, &self.record_buffer[..])
        } else {
            (self.recv_frame(fds, deadline)?, self.decoder.buffer())
        };
        match payload {
            None => Ok(None),
            Some(Payload::Lent(range)) => Rx::decode_lent(&buffer[range]).map(Some),
            Some(Payload::Own(payload)) => Rx::decode(payload).map(Some),
        }
    }

    fn recv_frame(
        &mut self,
        fds: &mut Vec<OwnedFd>,
        deadline: Option<Instant>,
    ) -> Result<Option<Payload>, Error> {
        loop {
            if let Some(Frame {
                payload,
                offset,
                end,
            }) = self.decoder.next_frame()?
            {
                self.take_fds(offset..end, fds)?;
                return Ok(Some(payload));
            }
            // A reader blocked in `recv` on a stream is woken each time the peer takes
            // data this end sent (the kernel's wake-up for writers reaches it too), two
            // context switches for nothing. Right after a send that is what the peer
            // does, so then wait in `poll` for input, which nothing else ends.
            let wait = match self.sent_since_read {
                true => Wait::Poll(deadline),
                false => Wait::until(deadline),
            };
            self.sent_since_read = false;
            let offset = self.decoder.read_offset();
            let mut arrived = Vec::new();
            let decoder = &mut self.decoder;
            let bytes = match decoder.partial_payload() {
                // A large payload: read straight into its buffer, unzeroed.
                Some((payload, left)) => {
                    let bytes = io_with(&self.socket, wait, PollFlags::IN, |socket, flags| {
                        recvmsg_append(socket, payload, left, &mut arrived, recv_flags(flags))
                            .map(|r| r.bytes)
                    })?;
                    decoder.appended();
                    bytes
                }
                None => {
                    let bytes = io_with(&self.socket, wait, PollFlags::IN, |socket, flags| {
                        socket
                            .recv_msg(decoder.spare(), &mut arrived, recv_flags(flags))
                            .map(|r| r.bytes)
                    })?;
                    decoder.filled(bytes);
                    bytes
                }
            };
            if !arrived.is_empty() {
                if !self.accept_fds {
                    drop(arrived);
                    return Err(refused());
                }
                self.fds_in
                    .push_back((offset..offset + bytes as u64, arrived));
            }
            if bytes == 0 {
                self.decoder.eof()?;
                return match self.fds_in.is_empty() {
                    true => Ok(None),
                    false => Err(Error::new(
                        ErrorKind::Fds,
                        "descriptors arrived with no frame",
                    )),
                };
            }
        }
    }

    /// Moves the descriptors that belong to `frame` (its stream offsets) to `fds`.
    ///
    /// The kernel hands over descriptors with the read that takes the data they were
    /// sent with, and ends that read there: a read may first take data sent earlier
    /// without descriptors, but never data sent later. Our sender attaches them to the
    /// `sendmsg` that starts their frame, so they belong to the **last frame that starts
    /// within the read** that brought them: the frame that starts in that read and does
    /// not end before the read does.
    fn take_fds(&mut self, frame: Range<u64>, fds: &mut Vec<OwnedFd>) -> Result<(), Error> {
        while let Some((read, _)) = self.fds_in.front() {
            if read.start > frame.start {
                break; // a later frame's
            }
            if frame.end < read.end {
                break; // a frame starting after this one in the same read takes them
            }
            let (read, arrived) = self.fds_in.pop_front().expect("checked above");
            if !read.contains(&frame.start) {
                return Err(Error::new(
                    ErrorKind::Fds,
                    "descriptors arrived inside a frame, not with its start",
                ));
            }
            fds.extend(arrived);
        }
        Ok(())
    }

    fn recv_record(
        &mut self,
        fds: &mut Vec<OwnedFd>,
        deadline: Option<Instant>,
    ) -> Result<Option<Payload>, Error> {
        if let Some(record) = self.pending_record.take() {
            return Ok(Some(Payload::Own(record)));
        }
        if self.record_buffer.is_empty() {
            let socket_buffers = rustix::net::sockopt::socket_send_buffer_size(&self.socket)
                .map_err(io::Error::from)?
                .max(
                    rustix::net::sockopt::socket_recv_buffer_size(&self.socket)
                        .map_err(io::Error::from)?,
                );
            let len = socket_buffers
                .max(MIN_RECORD_BUFFER)
                .min(self.max_frame_len.saturating_add(1));
            self.record_buffer = vec![0; len.max(1)];
        }
        let mut arrived = Vec::new();
        let buffer = &mut self.record_buffer;
        let received = io_with(
            &self.socket,
            Wait::until(deadline),
            PollFlags::IN,
            |socket, flags| socket.recv_msg(buffer, &mut arrived, recv_flags(flags)),
        )?;
        if received.truncated || received.bytes > self.max_frame_len {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "a record over the limit of {} bytes (max_frame_len) was dropped",
                    self.max_frame_len
                ),
            ));
        }
        if received.bytes == 0 && self.seqpacket && !received.control_seen {
            return Ok(None); // no record, no timestamp: the end of the stream
        }
        let record = match arrived.last() {
            Some(last) if received.bytes == 0 && memfd::is_sealed(last) => {
                let sealed = arrived.pop().expect("checked above");
                Payload::Own(memfd::read(sealed, self.max_frame_len)?)
            }
            _ => Payload::Lent(0..received.bytes),
        };
        if !arrived.is_empty() && !self.accept_fds {
            drop(arrived);
            self.pending_record = Some(record.into_vec(&self.record_buffer));
            return Err(refused());
        }
        fds.append(&mut arrived);
        Ok(Some(record))
    }
}

/// Where an operation on the socket waits for it to be ready.
#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Inside the system call, for as long as it takes.
    InCall,
    /// In `poll` first, until the deadline if there is one; the call itself then never
    /// blocks.
    Poll(Option<Instant>),
}

impl Wait {
    /// In `poll` with a deadline, else in the call.
    fn until(deadline: Option<Instant>) -> Wait {
        match deadline {
            Some(_) => Wait::Poll(deadline),
            None => Wait::InCall,
        }
    }
}

/// Runs `op` on the socket until it succeeds, waiting for `events` as `wait` says; `op`
/// is told whether it must not block. A free function, so that callers can lend other
/// fields of the channel to `op`.
fn io_with<T>(
    socket: &Socket,
    wait: Wait,
    events: PollFlags,
    mut op: impl FnMut(&Socket, bool) -> io::Result<T>,
) -> Result<T, Error> {
    loop {
        let polled = match wait {
            Wait::InCall => false,
            Wait::Poll(deadline) => {
                wait_until(socket, events, deadline)?;
                true
            }
        };
        match op(socket, polled) {
            Ok(value) => return Ok(value),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock && polled => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Waits until `socket` is ready for `events`, or fails with `TimedOut` at `deadline`.
fn wait_until(socket: &Socket, events: PollFlags, deadline: Option<Instant>) -> Result<(), Error> {
    loop {
        let timeout = deadline.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            })
        });
        let mut fds = [PollFd::new(socket, events)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::TimedOut,
                    "timed out (read_timeout or write_timeout)",
                ));
            }
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => {}
            Err(err) => return Err(io::Error::from(err).into()),
        }
    }
}

fn send_flags(nonblocking: bool) -> SendFlags {
    if nonblocking {
        SendFlags::DONTWAIT
    } else {
        SendFlags::empty()
    }
}

fn recv_flags(nonblocking: bool) -> i32 {
    if nonblocking { libc::MSG_DONTWAIT } else { 0 }
}

/// Descriptors came to a channel that does not accept them.
fn refused() -> Error {
    Error::new(
        ErrorKind::Fds,
        "descriptors came with a message, but this channel does not accept them (accept_fds): they were closed",
    )
}

/// The peer refused the descriptors of a message (`EPERM`), if that is what `err` is.
fn peer_refused(err: Error, fds: &[BorrowedFd<'_>]) -> Error {
    if fds.is_empty() || raw_errno(&err) != Some(libc::EPERM) {
        return err;
    }
    Error::with_source(
        ErrorKind::Fds,
        "the peer does not accept descriptors (SO_PASSRIGHTS is off on its end; a sockpair \
         Channel accepts them after accept_fds(true)); nothing was sent",
        err,
    )
}

fn raw_errno(err: &Error) -> Option<i32> {
    std::error::Error::source(err)?
        .downcast_ref::<io::Error>()?
        .raw_os_error()
}

impl<Tx, Rx> fmt::Debug for Channel<Tx, Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("socket", &self.socket)
            .field("framing", &self.framing)
            .field("max_frame_len", &self.max_frame_len)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .finish_non_exhaustive()
    }
}
