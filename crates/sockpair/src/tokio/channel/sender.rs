//! [`AsyncSender`]: the sending half of an [`AsyncChannel`](super::AsyncChannel).

use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_sink::Sink;
use tokio::io::Interest;

use crate::channel::drive::{
    Drive, HIGH_WATER, QUEUE_BELOW, TxCore, Writing, commit, flush_core, has_pending,
    queue_message, queued_bytes, queued_messages, with_attached,
};
use crate::error::Error;
use crate::frame::length;
use crate::message::{Encode, EncodeAs};
use crate::socket::Socket;
use crate::tokio::socket::AsyncSocket;

/// The sending half of an [`AsyncChannel`](super::AsyncChannel) ([`AsyncChannel::split`](super::AsyncChannel::split)): `Send`, to move into
/// a task of its own. Dropping it shuts down writing (`shutdown(SHUT_WR)`); what a
/// cancelled send left unsent is dropped with it, so [`flush`](AsyncSender::flush) first.
pub struct AsyncSender<Tx> {
    pub(super) socket: Arc<AsyncSocket>,
    pub(super) split: bool,
    pub(super) core: TxCore,
    pub(super) scratch: Vec<u8>,
    pub(super) types: PhantomData<fn(&Tx)>,
}

impl<Tx> AsyncSender<Tx> {
    /// Writes what a cancelled send (or a [`try_send`](AsyncSender::try_send)) left
    /// unsent, descriptors included, and every message [`feed`](AsyncSender::feed)
    /// queued, in as few writes as the socket takes; at once if nothing waits. Cancel
    /// safe: dropped, what is not written stays for the next send or flush.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) with the kernel's error (`EPIPE` once the
    /// peer is gone).
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Waits until a message can be sent: writes what is left unsent, then waits until
    /// the socket has room. Sends nothing new; cancel safe. A
    /// [`try_send`](AsyncSender::try_send) right after usually commits its message
    /// (it may still find the room too small: a large record, another writer).
    ///
    /// # Errors
    ///
    /// As [`flush`](AsyncSender::flush).
    pub async fn ready(&mut self) -> Result<(), Error> {
        self.flush().await?;
        poll_fn(|cx| self.socket.poll_writable(cx)).await
    }

    /// The socket underneath (non-blocking).
    pub fn socket(&self) -> &Socket {
        self.socket.get_ref()
    }

    /// How many messages [`feed`](AsyncSender::feed) queued that are not written yet.
    pub fn queued(&self) -> usize {
        queued_messages(&self.core)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !has_pending(&self.core) {
            return Poll::Ready(Ok(()));
        }
        let core = &mut self.core;
        self.socket.poll_io(cx, Interest::WRITABLE, |socket| {
            flush_core(core, Drive::once(socket))
        })
    }
}

impl<Tx: Encode> AsyncSender<Tx> {
    /// Sends one message: a `Tx` or a borrowed form of it, as [`Sender::send`](crate::Sender::send),
    /// waiting for room without blocking the runtime. For what a dropped send has sent,
    /// see [cancel safety](super::AsyncChannel#cancel-safety).
    ///
    /// # Errors
    ///
    /// As [`Sender::send`](crate::Sender::send), without timeouts.
    pub async fn send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.send_with_fds(message, &[]).await
    }

    /// Sends one message with descriptors, as [`Sender::send_with_fds`](crate::Sender::send_with_fds).
    ///
    /// # Errors
    ///
    /// As [`Sender::send_with_fds`](crate::Sender::send_with_fds), without timeouts.
    pub async fn send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        // What waits (a cancelled send's rest, queued messages) goes first.
        self.flush().await?;
        let TxCore::Stream(tx) = &mut self.core else {
            // A record goes whole or not at all: nothing to keep.
            let (core, scratch) = (&mut self.core, &mut self.scratch);
            return poll_fn(|cx| {
                self.socket.poll_io(cx, Interest::WRITABLE, |socket| {
                    commit(core, scratch, socket, message, fds)
                })
            })
            .await;
        };
        // On a stream the frame is written from where it is while this future lives;
        // dropped part way, its rest is kept (see `Writing`).
        let fds = with_attached(message, fds);
        self.scratch.clear();
        let payload = message.encode_as(&mut self.scratch)?;
        let mut header = [0; length::MAX_HEADER];
        let mut writing = Writing::start(tx, payload, &mut header, &fds)?;
        let socket = &self.socket;
        poll_fn(|cx| {
            while !writing.done() {
                ready!(socket.poll_io(cx, Interest::WRITABLE, |s| writing.write_some(s)))?;
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues one message for the next [`flush`](AsyncSender::flush), as
    /// [`Sender::feed`](crate::Sender::feed): no system call until the queue holds
    /// 64 KiB, when this feed waits for it to be written. Cancel safe: once the future
    /// is polled the message is queued, whole; dropped while it writes the full queue,
    /// what is not written stays queued.
    ///
    /// Dropping an `AsyncSender` with queued messages drops them (a destructor cannot
    /// wait on the runtime): [`flush`](AsyncSender::flush) first, as with a `Sink`'s
    /// `close`.
    ///
    /// # Errors
    ///
    /// As [`send`](AsyncSender::send) (a message that cannot be encoded is not queued).
    pub async fn feed<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.feed_with_fds(message, &[]).await
    }

    /// Queues one message with descriptors; as [`feed`](AsyncSender::feed), except that
    /// a message with descriptors is sent at once, after what is queued, as
    /// [`send_with_fds`](AsyncSender::send_with_fds).
    ///
    /// # Errors
    ///
    /// As [`send_with_fds`](AsyncSender::send_with_fds).
    pub async fn feed_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        if !fds.is_empty() {
            return self.send_with_fds(message, fds).await;
        }
        match queue_message(&mut self.core, &mut self.scratch, message, QUEUE_BELOW)? {
            None => self.send(message).await, // large: written from where it is
            Some(true) => self.flush().await,
            Some(false) => Ok(()),
        }
    }

    /// Commits one message without waiting: writes what the socket takes of it now,
    /// descriptors with the first byte, and keeps the rest for the next send or
    /// [`flush`](AsyncSender::flush), which you then owe the peer. Call after
    /// [`ready`](AsyncSender::ready).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::WouldBlock`](crate::ErrorKind::WouldBlock) if the socket has no room
    /// now, or an earlier message's rest is still unsent: **nothing of the message was
    /// sent**. Otherwise as [`send`](AsyncSender::send).
    pub fn try_send<M: EncodeAs<Tx> + ?Sized>(&mut self, message: &M) -> Result<(), Error> {
        self.try_send_with_fds(message, &[])
    }

    /// [`try_send`](AsyncSender::try_send) with descriptors.
    ///
    /// # Errors
    ///
    /// As [`try_send`](AsyncSender::try_send) and [`send_with_fds`](AsyncSender::send_with_fds).
    pub fn try_send_with_fds<M: EncodeAs<Tx> + ?Sized>(
        &mut self,
        message: &M,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), Error> {
        let (core, scratch) = (&mut self.core, &mut self.scratch);
        self.socket
            .try_write(|socket| commit(core, scratch, socket, message, fds))
    }
}

/// `feed`, `send` and `send_all` of `futures`' `SinkExt`, for the owned messages a
/// channel can send (`Vec<u8>` or `String` for `AsyncSender<Vec<u8>>`/`<String>`, a `T`
/// or `Json(T)` for `AsyncSender<Json<T>>`, ...). An item is queued by `start_send`, as
/// [`feed`](AsyncSender::feed) does, and written by `poll_flush`; `poll_ready` writes
/// the queue first once it holds 64 KiB. Cancel safety is that of `feed` and `flush`:
/// an item taken is queued whole, and a flush dropped half way leaves the rest queued.
/// `poll_close` flushes, then shuts down writing (`shutdown(SHUT_WR)`).
impl<Tx, M> Sink<M> for AsyncSender<Tx>
where
    Tx: Encode,
    M: EncodeAs<Tx>,
{
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        match queued_bytes(&this.core) >= HIGH_WATER {
            true => this.poll_flush(cx),
            false => Poll::Ready(Ok(())),
        }
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), Error> {
        let this = self.get_mut();
        match queue_message(&mut this.core, &mut this.scratch, &item, usize::MAX)? {
            Some(_) => Ok(()),
            None => Err(Error::new(
                crate::ErrorKind::Encode,
                "a message that carries a descriptor (a Shared) is not queued by a Sink: \
                 send it with AsyncSender::send",
            )),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        ready!(this.poll_flush(cx))?;
        let _ = this.socket.shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

impl<Tx> Drop for AsyncSender<Tx> {
    fn drop(&mut self) {
        if self.split {
            // Best effort: the peer may be gone already.
            let _ = self.socket.shutdown(std::net::Shutdown::Write);
        }
    }
}

impl<Tx> fmt::Debug for AsyncSender<Tx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncSender")
            .field("socket", self.socket())
            .finish_non_exhaustive()
    }
}
