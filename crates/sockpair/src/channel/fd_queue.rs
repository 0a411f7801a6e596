//! Which frame descriptors received on a byte stream belong to: a pure rule.
//!
//! The kernel hands descriptors over with the read that takes the data they were sent
//! with, and ends that read with that data: a read may first take data sent earlier
//! without descriptors, but never data sent later. sockpair's sender attaches them to
//! the `sendmsg` that starts their frame. So they belong to **the frame that holds the
//! last byte of the read that brought them**: the last frame that starts within that
//! read, or, when none starts there (a foreign sender attached them inside a frame),
//! the frame the read lies in.

use std::collections::VecDeque;
use std::ops::Range;
use std::os::fd::OwnedFd;

/// What came with one read.
#[derive(Debug)]
pub(crate) enum Fds {
    /// These descriptors.
    Here(Vec<OwnedFd>),
    /// Descriptors came, but this end does not accept them: they were closed.
    Refused,
    /// Descriptors were sent, but did not all arrive (`MSG_CTRUNC`); those that did were
    /// closed.
    Lost,
}

/// Why a frame's descriptors cannot be handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trouble {
    Refused,
    Lost,
}

/// Whether a read that ended at stream offset `read_end` (exclusive, after at least one
/// byte) belongs to `frame`.
pub(crate) fn belongs_to(frame: &Range<u64>, read_end: u64) -> bool {
    frame.contains(&(read_end - 1))
}

/// Descriptors received on a byte stream, each with the end of the read that brought
/// them, until the frame they belong to is complete.
#[derive(Debug, Default)]
pub(crate) struct FdQueue {
    arrivals: VecDeque<(u64, Fds)>,
}

impl FdQueue {
    /// Notes what a read ending at stream offset `read_end` brought.
    pub(crate) fn arrived(&mut self, read_end: u64, fds: Fds) {
        self.arrivals.push_back((read_end, fds));
    }

    /// The descriptors of `frame`, which is the earliest frame not taken yet: those of
    /// every read whose last byte it holds, in order. If any of them were refused or
    /// lost, none are handed out (the others are closed).
    #[inline]
    pub(crate) fn take(&mut self, frame: Range<u64>) -> Result<Vec<OwnedFd>, Trouble> {
        if self.arrivals.is_empty() {
            return Ok(Vec::new()); // the common case: no descriptors at all
        }
        self.take_arrived(frame)
    }

    fn take_arrived(&mut self, frame: Range<u64>) -> Result<Vec<OwnedFd>, Trouble> {
        let mut fds = Vec::new();
        let mut trouble = None;
        while let Some((read_end, _)) = self.arrivals.front() {
            if !belongs_to(&frame, *read_end) {
                break; // a later frame's
            }
            match self.arrivals.pop_front().expect("checked above").1 {
                Fds::Here(arrived) => fds.extend(arrived),
                Fds::Refused => trouble = trouble.or(Some(Trouble::Refused)),
                Fds::Lost => trouble = Some(Trouble::Lost),
            }
        }
        match trouble {
            None => Ok(fds),
            Some(trouble) => Err(trouble),
        }
    }

    /// Whether descriptors are waiting for a frame.
    pub(crate) fn is_empty(&self) -> bool {
        self.arrivals.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn a_read_belongs_to_the_frame_that_holds_its_last_byte() {
        // Frames [0, 10), [10, 20), [20, 30).
        assert!(
            belongs_to(&(0..10), 10),
            "a read of exactly the first frame"
        );
        assert!(
            !belongs_to(&(0..10), 11),
            "a read reaching into the second frame"
        );
        assert!(belongs_to(&(10..20), 11), "...belongs to the second");
        assert!(
            belongs_to(&(10..20), 15),
            "a read inside a frame: that frame"
        );
        assert!(belongs_to(&(10..20), 20));
        assert!(!belongs_to(&(10..20), 21));
    }

    #[test]
    fn descriptors_wait_for_their_frame_and_come_in_order() {
        let mut queue = FdQueue::default();
        // Read 1: bytes 0..14, the first frame [0, 10) and the start of the second
        // [10, 30), whose descriptors it brought. Read 2: 14..30 with more (foreign).
        queue.arrived(14, Fds::Here(vec![fd()]));
        queue.arrived(30, Fds::Here(vec![fd(), fd()]));
        assert_eq!(queue.take(0..10).unwrap().len(), 0);
        assert_eq!(queue.take(10..30).unwrap().len(), 3);
        assert!(queue.is_empty());
    }

    #[test]
    fn refused_or_lost_descriptors_fail_their_frame_only() {
        let mut queue = FdQueue::default();
        queue.arrived(5, Fds::Lost);
        queue.arrived(12, Fds::Refused);
        queue.arrived(25, Fds::Here(vec![fd()]));
        assert_eq!(queue.take(0..10).unwrap_err(), Trouble::Lost);
        assert_eq!(queue.take(10..20).unwrap_err(), Trouble::Refused);
        assert_eq!(queue.take(20..30).unwrap().len(), 1);
        // Lost beats refused in one frame: it says more.
        queue.arrived(35, Fds::Refused);
        queue.arrived(38, Fds::Lost);
        assert_eq!(queue.take(30..40).unwrap_err(), Trouble::Lost);
    }
}
