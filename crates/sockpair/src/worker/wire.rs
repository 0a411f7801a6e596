//! The two messages between parent and worker, each one frame of a
//! [`Channel`](crate::Channel) over the pair.
//!
//! - Request: `[version: u8 = 2][last: u8][id: u64 LE][function: i64 LE][trampoline: i64
//!   LE]`, then the argument in postcard. `last` = 1: the worker exits after answering
//!   (a [`spawn`](super::spawn)); 0: it waits for the next request (a
//!   [`Pool`](super::Pool)); 2: a [`probe`], no call. `id` is never 0, and new for each
//!   request of a process.
//! - Answer: `[tag: u8][id: u64 LE]`, the id of the request it answers (0: a request the
//!   worker could not read), then: tag 0 the result in postcard; 1 a panic, as postcard
//!   `(String, Option<String>)`; 2 a serde failure in the worker, as UTF-8; 3 a function
//!   the worker cannot run, as UTF-8.
//!
//! A frame whose id is not the request's means the pair is out of step (the function
//! wrote to the worker's end itself, say): the parent reports it and never reuses that
//! worker.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::entry::{Call, Outcome};
use super::error::Error;

const VERSION: u8 = 2;
const HEADER: usize = 1 + 1 + 8 + 8 + 8;

/// The id of an answer to a request that could not be read.
pub(crate) const UNREAD: u64 = 0;

/// What every out-of-step error ends with.
pub(crate) const OUT_OF_STEP: &str =
    "out of step (did the function write to fd 3?); it is not used again";

/// The `last` byte of a [`probe`].
const PROBE: u8 = 2;

/// A new request id: never [`UNREAD`], never the same twice in this process.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A request to call `call` with `argument`, and its id.
pub(crate) fn request<A: Serialize>(
    call: Call,
    last: bool,
    argument: &A,
) -> Result<(u64, Vec<u8>), Error> {
    let id = next_id();
    let mut frame = Vec::with_capacity(HEADER + 64);
    frame.extend([VERSION, last.into()]);
    frame.extend(id.to_le_bytes());
    frame.extend((call.function as i64).to_le_bytes());
    frame.extend((call.trampoline as i64).to_le_bytes());
    let frame = postcard::to_extend(argument, frame).map_err(|err| {
        Error::Decode(format!(
            "the argument did not encode as {}: {err}",
            std::any::type_name::<A>()
        ))
    })?;
    Ok((id, frame))
}

/// A probe: no call. A pool sends it to a worker whose answer stalled part way (bytes
/// that were not its answer came first: its function wrote to fd 3, and the pool reads
/// the worker's real answer as the rest of a frame that never ends). A worker reads it
/// only once it has answered all it was asked, and then ends (status 0): the pool sees
/// its answer cut short, and reports the pair out of step.
pub(crate) fn probe() -> Vec<u8> {
    let mut frame = vec![VERSION, PROBE];
    frame.resize(HEADER, 0);
    frame
}

/// What a request asks: its id, the call, its `last` flag and the encoded argument; or
/// that it is a [`probe`].
pub(crate) struct Request<'a> {
    pub(crate) id: u64,
    pub(crate) call: Call,
    pub(crate) last: bool,
    pub(crate) probe: bool,
    pub(crate) argument: &'a [u8],
}

/// A request's parts.
pub(crate) fn parse_request(frame: &[u8]) -> Result<Request<'_>, String> {
    let Some((header, argument)) = frame.split_first_chunk::<HEADER>() else {
        return Err(format!("a request of {} bytes is too short", frame.len()));
    };
    if header[0] != VERSION || header[1] > PROBE {
        return Err(format!(
            "a request of version {} (flags {}) is not one this sockpair writes",
            header[0], header[1]
        ));
    }
    let word = |at: usize| {
        let bytes: [u8; 8] = header[at..at + 8].try_into().expect("8 bytes");
        i64::from_le_bytes(bytes) as isize
    };
    Ok(Request {
        id: word(2) as u64,
        call: Call {
            function: word(10),
            trampoline: word(18),
        },
        last: header[1] == 1,
        probe: header[1] == PROBE,
        argument,
    })
}

/// How the worker answers.
pub(crate) enum Answer {
    Outcome(Outcome),
    Panicked(String, Option<String>),
    NotFound(String),
}

impl Answer {
    /// The frame answering request `id`.
    pub(crate) fn into_frame(self, id: u64) -> Vec<u8> {
        let head = |tag: u8| {
            let mut frame = vec![tag];
            frame.extend(id.to_le_bytes());
            frame
        };
        let text = |tag: u8, text: String| [&head(tag)[..], text.as_bytes()].concat();
        match self {
            Answer::Outcome(Outcome::Returned(bytes)) => [&head(0)[..], &bytes].concat(),
            Answer::Panicked(message, location) => {
                let mut frame = head(1);
                frame.extend(
                    postcard::to_allocvec(&(message, location)).expect("strings always encode"),
                );
                frame
            }
            Answer::Outcome(Outcome::ArgumentDecode(why) | Outcome::ResultEncode(why)) => {
                text(2, why)
            }
            Answer::NotFound(why) => text(3, why),
        }
    }
}

/// The id of the request `frame` answers, if it is long enough to name one.
pub(crate) fn answer_id(frame: &[u8]) -> Option<u64> {
    let id: [u8; 8] = frame.get(1..9)?.try_into().ok()?;
    Some(u64::from_le_bytes(id))
}

/// Whether `frame` answers request `id` (or says the worker could not read it): if
/// not, the pair is out of step.
pub(crate) fn answers(frame: &[u8], id: u64) -> bool {
    match answer_id(frame) {
        Some(got) if got == id => true,
        Some(UNREAD) => frame.first() == Some(&3),
        _ => false,
    }
}

/// The result an answer to request `id` carries, or the error it reports.
pub(crate) fn parse_answer<R: DeserializeOwned>(frame: &[u8], id: u64) -> Result<R, Error> {
    if !answers(frame, id) {
        return Err(Error::Decode(match answer_id(frame) {
            Some(got) => format!(
                "the worker answered request {got}, not request {id}: its end of the pair is \
                 {OUT_OF_STEP}"
            ),
            None => format!(
                "a frame of {} bytes came instead of the answer to request {id}: the \
                 worker's end of the pair is {OUT_OF_STEP}",
                frame.len()
            ),
        }));
    }
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let (&tag, rest) = frame.split_first().expect("an answer has a tag");
    match (tag, &rest[8..]) {
        (0, result) => postcard::from_bytes(result).map_err(|err| {
            Error::Decode(format!(
                "the result did not decode as {}: {err}",
                std::any::type_name::<R>()
            ))
        }),
        (1, panic) => match postcard::from_bytes::<(String, Option<String>)>(panic) {
            Ok((message, location)) => Err(Error::Panicked { message, location }),
            Err(err) => Err(Error::Decode(format!(
                "a panic report did not decode: {err}"
            ))),
        },
        (2, why) => Err(Error::Decode(text(why))),
        (3, why) => Err(Error::NotFound(text(why))),
        _ => Err(Error::Decode(format!(
            "an answer of {} bytes that no sockpair worker writes",
            frame.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        let call = Call {
            function: -0x1234,
            trampoline: 0x5678,
        };
        let (id, frame) = request(call, true, &(7u32, "seven")).unwrap();
        let (other_id, _) = request(call, true, &()).unwrap();
        assert!(id != UNREAD && other_id != id, "ids are new each time");
        let parsed = parse_request(&frame).unwrap();
        assert_eq!((parsed.id, parsed.call, parsed.last), (id, call, true));
        assert_eq!(
            postcard::from_bytes::<(u32, String)>(parsed.argument).unwrap(),
            (7, "seven".to_owned())
        );
        assert!(parse_request(&frame[..HEADER - 1]).is_err());
        let mut other = frame.clone();
        other[0] = 1;
        assert!(parse_request(&other).is_err());
        other[0] = VERSION;
        other[1] = 3;
        assert!(parse_request(&other).is_err());
        // A probe is a request of its own kind, never a call.
        let probe = probe();
        let parsed = parse_request(&probe).unwrap();
        assert!(parsed.probe && !parsed.last);
        assert!(!parse_request(&frame).unwrap().probe);
    }

    #[test]
    fn answers_round_trip_and_garbage_is_an_error() {
        let id = 77;
        let returned = Answer::Outcome(Outcome::Returned(postcard::to_allocvec(&42u64).unwrap()));
        assert_eq!(
            parse_answer::<u64>(&returned.into_frame(id), id).unwrap(),
            42
        );
        let panicked = Answer::Panicked("boom".into(), Some("src/x.rs:1:2".into())).into_frame(id);
        match parse_answer::<u64>(&panicked, id) {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "boom");
                assert_eq!(location.as_deref(), Some("src/x.rs:1:2"));
            }
            other => panic!("{other:?}"),
        }
        let not_found = Answer::NotFound("nowhere".into()).into_frame(id);
        assert!(
            matches!(parse_answer::<u64>(&not_found, id), Err(Error::NotFound(why)) if why == "nowhere")
        );
        // A request the worker could not read is answered as such, whatever its id.
        let unread = Answer::NotFound("garbled".into()).into_frame(UNREAD);
        assert!(matches!(
            parse_answer::<u64>(&unread, id),
            Err(Error::NotFound(_))
        ));
        let decode = Answer::Outcome(Outcome::ArgumentDecode("bad".into())).into_frame(id);
        assert!(
            matches!(parse_answer::<u64>(&decode, id), Err(Error::Decode(why)) if why == "bad")
        );
        // A result that does not decode as the type asked for.
        let short = Answer::Outcome(Outcome::Returned(vec![])).into_frame(id);
        assert!(matches!(
            parse_answer::<u64>(&short, id),
            Err(Error::Decode(_))
        ));
        for garbage in [&[][..], &[9, 1, 2][..], &[1, 0xff][..]] {
            assert!(
                matches!(parse_answer::<u64>(garbage, id), Err(Error::Decode(_))),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn an_answer_to_another_request_is_out_of_step() {
        let returned = Answer::Outcome(Outcome::Returned(postcard::to_allocvec(&42u64).unwrap()));
        let frame = returned.into_frame(5);
        assert!(answers(&frame, 5) && !answers(&frame, 6));
        match parse_answer::<u64>(&frame, 6) {
            Err(Error::Decode(why)) => assert!(why.contains("out of step"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The stray frame of the issue: one byte, "x".
        assert!(!answers(b"x", 6));
        assert!(
            matches!(parse_answer::<u64>(b"x", 6), Err(Error::Decode(why)) if why.contains("out of step"))
        );
    }
}
