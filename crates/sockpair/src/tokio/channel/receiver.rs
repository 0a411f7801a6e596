//! [`AsyncReceiver`]: the receiving half of an [`AsyncChannel`](super::AsyncChannel), a
//! [`Stream`] of messages.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::io::Interest;

use crate::channel::drive::{Drive, RxCore, ends_messages, receive};
use crate::error::Error;
use crate::frame::Framing;
use crate::message::Receive;
use crate::socket::Socket;
use crate::tokio::socket::AsyncSocket;

/// The receiving half of an [`AsyncChannel`](super::AsyncChannel) ([`AsyncChannel::split`](super::AsyncChannel::split)): `Send`, to move
/// into a task of its own, and a [`Stream`] of messages.
///
/// The stream yields each message, or error, as it comes, and ends at the end of the
/// stream or after an error that ends it (as [`Messages`](crate::Messages)); it is cancel
/// safe as [`recv`](AsyncReceiver::recv) is.
pub struct AsyncReceiver<Rx> {
    pub(super) socket: Arc<AsyncSocket>,
    pub(super) core: RxCore,
    /// The stream ended.
    pub(super) done: bool,
    pub(super) types: PhantomData<fn() -> Rx>,
}

impl<Rx> AsyncReceiver<Rx> {
    /// The largest message accepted; see [`Receiver::max_frame_len`](crate::Receiver::max_frame_len).
    pub fn max_frame_len(&mut self, max: usize) -> &mut Self {
        self.core.set_max(max);
        self
    }

    /// Whether this end takes descriptors; see [`Receiver::accept_fds`](crate::Receiver::accept_fds).
    ///
    /// # Errors
    ///
    /// As [`Receiver::accept_fds`](crate::Receiver::accept_fds).
    pub fn accept_fds(&mut self, accept: bool) -> io::Result<&mut Self> {
        self.core.set_accept(self.socket.get_ref(), accept)?;
        Ok(self)
    }

    /// The framing of a stream; `None` on records.
    pub fn framing(&self) -> Option<Framing> {
        self.core.framing()
    }

    /// The socket underneath (non-blocking).
    pub fn socket(&self) -> &Socket {
        self.socket.get_ref()
    }
}

impl<Rx: Receive> AsyncReceiver<Rx> {
    /// Receives one message, waiting without blocking the runtime; `Ok(None)` at a
    /// clean end of stream. Descriptors that came with it are closed: use
    /// [`recv_with_fds`](AsyncReceiver::recv_with_fds) to keep them. Cancel safe.
    ///
    /// # Errors
    ///
    /// As [`Receiver::recv`](crate::Receiver::recv), without timeouts.
    pub async fn recv(&mut self) -> Result<Option<Rx::Value>, Error> {
        self.recv_with_fds(&mut Vec::new()).await
    }

    /// Receives one message and appends the descriptors that came with it to `fds`
    /// (close-on-exec, in the order sent). Cancel safe: `fds` grows only when the
    /// message is whole.
    ///
    /// # Errors
    ///
    /// As [`recv`](AsyncReceiver::recv).
    pub async fn recv_with_fds(
        &mut self,
        fds: &mut Vec<OwnedFd>,
    ) -> Result<Option<Rx::Value>, Error> {
        poll_fn(|cx| self.poll_recv(cx, fds)).await
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        fds: &mut Vec<OwnedFd>,
    ) -> Poll<Result<Option<Rx::Value>, Error>> {
        let core = &mut self.core;
        self.socket.poll_io(cx, Interest::READABLE, |socket| {
            receive::<Rx>(core, false, Drive::once(socket), fds)
        })
    }
}

impl<Rx: Receive> Stream for AsyncReceiver<Rx> {
    type Item = Result<Rx::Value, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let received = ready!(this.poll_recv(cx, &mut Vec::new()));
        Poll::Ready(match received {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => {
                this.done = true;
                None
            }
            Err(err) => {
                this.done = ends_messages(&err);
                Some(Err(err))
            }
        })
    }
}

impl<Rx> fmt::Debug for AsyncReceiver<Rx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncReceiver")
            .field("socket", self.socket())
            .field("framing", &self.framing())
            .finish_non_exhaustive()
    }
}
