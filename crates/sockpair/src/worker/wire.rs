//! The two messages between parent and worker, each one frame of a
//! [`Channel`](crate::Channel) over the pair.
//!
//! - Request: `[version: u8 = 1][last: u8][function: i64 LE][trampoline: i64 LE]`, then
//!   the argument in postcard. `last` = 1: the worker exits after answering (a
//!   [`spawn`](super::spawn)); 0: it waits for the next request (a [`Pool`](super::Pool)).
//! - Answer: `[tag: u8]` then: 0 the result in postcard; 1 a panic, as postcard
//!   `(String, Option<String>)`; 2 a serde failure in the worker, as UTF-8; 3 a function
//!   the worker cannot run, as UTF-8.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::entry::{Call, Outcome};
use super::error::Error;

const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 8;

/// The request to call `call` with `argument`.
pub(crate) fn request<A: Serialize>(
    call: Call,
    last: bool,
    argument: &A,
) -> Result<Vec<u8>, Error> {
    let mut frame = Vec::with_capacity(HEADER + 64);
    frame.extend([VERSION, last.into()]);
    frame.extend((call.function as i64).to_le_bytes());
    frame.extend((call.trampoline as i64).to_le_bytes());
    postcard::to_extend(argument, frame).map_err(|err| {
        Error::Decode(format!(
            "the argument did not encode as {}: {err}",
            std::any::type_name::<A>()
        ))
    })
}

/// A request's call, its `last` flag and its encoded argument.
pub(crate) fn parse_request(frame: &[u8]) -> Result<(Call, bool, &[u8]), String> {
    let Some((header, argument)) = frame.split_first_chunk::<HEADER>() else {
        return Err(format!("a request of {} bytes is too short", frame.len()));
    };
    if header[0] != VERSION || header[1] > 1 {
        return Err(format!(
            "a request of version {} (flags {}) is not one this sockpair writes",
            header[0], header[1]
        ));
    }
    let word = |at: usize| {
        let bytes: [u8; 8] = header[at..at + 8].try_into().expect("8 bytes");
        i64::from_le_bytes(bytes) as isize
    };
    let call = Call {
        function: word(2),
        trampoline: word(10),
    };
    Ok((call, header[1] == 1, argument))
}

/// How the worker answers.
pub(crate) enum Answer {
    Outcome(Outcome),
    Panicked(String, Option<String>),
    NotFound(String),
}

impl Answer {
    /// The answer's frame.
    pub(crate) fn into_frame(self) -> Vec<u8> {
        let text = |tag: u8, text: String| [&[tag][..], text.as_bytes()].concat();
        match self {
            Answer::Outcome(Outcome::Returned(mut bytes)) => {
                bytes.insert(0, 0);
                bytes
            }
            Answer::Panicked(message, location) => {
                let mut frame = vec![1];
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

/// The result an answer carries, or the error it reports.
pub(crate) fn parse_answer<R: DeserializeOwned>(frame: &[u8]) -> Result<R, Error> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match frame.split_first() {
        Some((0, result)) => postcard::from_bytes(result).map_err(|err| {
            Error::Decode(format!(
                "the result did not decode as {}: {err}",
                std::any::type_name::<R>()
            ))
        }),
        Some((1, panic)) => match postcard::from_bytes::<(String, Option<String>)>(panic) {
            Ok((message, location)) => Err(Error::Panicked { message, location }),
            Err(err) => Err(Error::Decode(format!(
                "a panic report did not decode: {err}"
            ))),
        },
        Some((2, why)) => Err(Error::Decode(text(why))),
        Some((3, why)) => Err(Error::NotFound(text(why))),
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
        let frame = request(call, true, &(7u32, "seven")).unwrap();
        let (parsed, last, argument) = parse_request(&frame).unwrap();
        assert_eq!((parsed, last), (call, true));
        assert_eq!(
            postcard::from_bytes::<(u32, String)>(argument).unwrap(),
            (7, "seven".to_owned())
        );
        assert!(parse_request(&frame[..HEADER - 1]).is_err());
        let mut other = frame.clone();
        other[0] = 2;
        assert!(parse_request(&other).is_err());
        other[0] = VERSION;
        other[1] = 2;
        assert!(parse_request(&other).is_err());
    }

    #[test]
    fn answers_round_trip_and_garbage_is_an_error() {
        let returned = Answer::Outcome(Outcome::Returned(postcard::to_allocvec(&42u64).unwrap()));
        assert_eq!(parse_answer::<u64>(&returned.into_frame()).unwrap(), 42);
        let panicked = Answer::Panicked("boom".into(), Some("src/x.rs:1:2".into())).into_frame();
        match parse_answer::<u64>(&panicked) {
            Err(Error::Panicked { message, location }) => {
                assert_eq!(message, "boom");
                assert_eq!(location.as_deref(), Some("src/x.rs:1:2"));
            }
            other => panic!("{other:?}"),
        }
        let not_found = Answer::NotFound("nowhere".into()).into_frame();
        assert!(
            matches!(parse_answer::<u64>(&not_found), Err(Error::NotFound(why)) if why == "nowhere")
        );
        let decode = Answer::Outcome(Outcome::ArgumentDecode("bad".into())).into_frame();
        assert!(matches!(parse_answer::<u64>(&decode), Err(Error::Decode(why)) if why == "bad"));
        // A result that does not decode as the type asked for.
        let short = Answer::Outcome(Outcome::Returned(vec![])).into_frame();
        assert!(matches!(parse_answer::<u64>(&short), Err(Error::Decode(_))));
        for garbage in [&[][..], &[9, 1, 2][..], &[1, 0xff][..]] {
            assert!(
                matches!(parse_answer::<u64>(garbage), Err(Error::Decode(_))),
                "{garbage:?}"
            );
        }
    }
}
