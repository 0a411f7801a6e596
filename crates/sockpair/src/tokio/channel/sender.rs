//! [`AsyncSender`]: the sending half of an [`AsyncChannel`](super::AsyncChannel).

use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::Interest;

use crate::channel::drive::{Drive, TxCore, commit, flush_core, has_unsent};
use crate::error::Error;
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
    /// unsent, descriptors included; at once if nothing is. Cancel safe: dropped, the
    /// rest stays for the next send or flush.
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

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if !has_unsent(&self.core) {
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
        let (core, scratch) = (&mut self.core, &mut self.scratch);
        poll_fn(|cx| {
            self.socket.poll_io(cx, Interest::WRITABLE, |socket| {
                commit(core, scratch, socket, message, fds)
            })
        })
        .await?;
        self.flush().await
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
