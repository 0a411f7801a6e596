//! The worker's defences, driven from inside the crate: a real worker process (this
//! unit-test binary, re-executed) fed requests that no `spawn` writes.

use std::time::{Duration, Instant};

use super::entry::{self, Call};
use super::process::{NoAnswer, Process};
use super::wire;
use super::{Error, spawn};
use crate::exe;

crate::worker::init_before_main!();

fn triple(x: u32) -> u32 {
    x * 3
}

/// Sends `(id, request)` to a fresh worker and returns what its answer says.
fn answer_to((id, request): &(u64, Vec<u8>)) -> Result<u32, Error> {
    let (mut process, _) = Process::start(&super::Options::new(), None, None).unwrap();
    process
        .send(request)
        .ok()
        .expect("the worker takes the request");
    let deadline = Instant::now() + Duration::from_secs(20);
    match process.answer(Some(deadline)) {
        Ok(answer) => {
            let _ = process.reap();
            wire::parse_answer(&answer, *id)
        }
        Err(NoAnswer::Ended) => Err(process.death()),
        Err(NoAnswer::Timeout) => panic!("no answer to {request:?}"),
        Err(NoAnswer::Failed(err)) => Err(err),
    }
}

#[test]
fn a_real_call_through_the_same_path_works() {
    let call = Call::of(triple as fn(u32) -> u32).unwrap();
    assert_eq!(
        answer_to(&wire::request(call, true, &14u32).unwrap()).unwrap(),
        42
    );
    assert_eq!(spawn(triple, 5).unwrap().join().unwrap(), 15);
}

#[test]
fn requests_no_spawn_writes_are_refused_not_called() {
    let short = answer_to(&(1, b"xx".to_vec())).unwrap_err();
    assert!(
        matches!(&short, Error::NotFound(why) if why.contains("too short")),
        "{short:?}"
    );
    let call = Call::of(triple as fn(u32) -> u32).unwrap();
    let mut versioned = wire::request(call, true, &1u32).unwrap();
    versioned.1[0] = 99;
    assert!(matches!(answer_to(&versioned), Err(Error::NotFound(why)) if why.contains("version")));
    // Distances that land outside the executable are refused before any call.
    for wild in [isize::MAX / 2, isize::MIN / 2, 1 << 40] {
        let bad = Call {
            function: wild,
            trampoline: call.trampoline,
        };
        let refused = answer_to(&wire::request(bad, true, &1u32).unwrap());
        assert!(
            matches!(&refused, Err(Error::NotFound(why)) if why.contains("no function")),
            "{refused:?}"
        );
        let bad = Call {
            function: call.function,
            trampoline: wild,
        };
        let refused = answer_to(&wire::request(bad, true, &1u32).unwrap());
        assert!(matches!(refused, Err(Error::NotFound(_))));
    }
}

/// A byte of the executable's data, which no call may name.
static STATIC_DATA: u8 = 7;

#[test]
fn functions_of_a_shared_library_are_told_apart() {
    let ours = triple as fn(u32) -> u32 as usize;
    let code = exe::code_ranges(ours);
    assert!(
        code.iter().any(|range| range.contains(&ours)),
        "the loader knows the executable's code: {code:x?}"
    );
    let getpid = libc::getpid as *const () as usize;
    let libc_code = exe::code_ranges(getpid);
    assert!(libc_code.iter().any(|range| range.contains(&getpid)));
    assert!(
        !libc_code.iter().any(|range| range.contains(&ours))
            && !code.iter().any(|range| range.contains(&getpid)),
        "libc is another object: its functions would be refused"
    );
    assert!(exe::code_ranges(8).is_empty(), "no object holds address 8");
    let data = &STATIC_DATA as *const u8 as usize;
    assert!(
        !code.iter().any(|range| range.contains(&data)),
        "the executable's data is not its code"
    );
    assert!(
        entry::call(
            Call {
                function: 1 << 45,
                trampoline: 1 << 45
            },
            &[]
        )
        .is_err()
    );
}
