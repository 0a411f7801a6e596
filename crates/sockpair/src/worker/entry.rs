//! Finding the function in the worker: by its offset from a function of sockpair's in
//! the same executable, checked on both sides.
//!
//! A function pointer does not survive `execve`, but its distance from any other
//! function of the same loaded file does: the loader maps the whole file at one base,
//! wherever ASLR puts it. The parent sends two such distances: the user's `fn(A) -> R`
//! and [`run::<A, R>`](run), the monomorphized trampoline that decodes `A`, calls the
//! function and encodes `R`. The worker adds them to its own address of the same anchor.
//!
//! That is sound because of what is checked before any call:
//! - in the parent ([`Call::of`]): both functions are in the loaded object that holds
//!   the anchor (not in a shared library, whose base differs from process to process);
//! - in the worker (`serve`): the request comes from the process that created the pair,
//!   which is the worker's parent, and that process runs the same executable file
//!   (device and inode of `/proc/<pid>/exe`); only [`Call::of`] writes requests there;
//! - in the worker ([`call`]): both addresses fall inside the anchor's object.
//!
//! Claiming the inherited descriptor and turning addresses back into functions are the
//! two `unsafe` operations of the worker; this file holds both.
#![allow(unsafe_code)]

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exe;
use crate::socket::Socket;
use crate::spawn::{claim_error, claim_fd};

/// The descriptor number of the worker's end.
pub(crate) const FD: i32 = 3;

/// The variable that makes a process a worker: set to its own pid, so that no
/// descendant that inherits it takes it as meant for itself.
pub(crate) const VAR: &str = "SOCKPAIR_WORKER";

/// The variable that, beside [`VAR`], makes a process the fork server, with the value
/// [`SERVER_ROLE`].
pub(crate) const ROLE: &str = "SOCKPAIR_WORKER_ROLE";

/// The value of [`ROLE`] that makes a process the fork server.
pub(crate) const SERVER_ROLE: &str = "fork-server";

/// The dynamic loader's variable that binds every symbol at load, set for the fork
/// server (and removed from its environment once it runs: its workers get their
/// parent's).
pub(crate) const BIND_NOW: &str = "LD_BIND_NOW";

/// Where the function and its trampoline are, as distances from [`anchor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub(crate) function: isize,
    pub(crate) trampoline: isize,
}

/// What the trampoline made of one call: the encoded result, or why there is none.
pub(crate) enum Outcome {
    Returned(Vec<u8>),
    ArgumentDecode(String),
    ResultEncode(String),
}

/// The trampoline's type: the function's address and the encoded argument in, the
/// outcome out. The same for every `A` and `R`, so the worker can call it knowing only
/// its address.
type Trampoline = fn(usize, &[u8]) -> Outcome;

/// The fixed point the distances are measured from: a function of this crate, which is
/// in the same loaded object as the monomorphized trampolines.
#[inline(never)]
fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

impl Call {
    /// Where `f` and `run::<A, R>` are.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] if either lies outside the object that holds
    /// sockpair (a function in a shared library).
    pub(crate) fn of<A, R>(f: fn(A) -> R) -> io::Result<Call>
    where
        A: DeserializeOwned,
        R: Serialize,
    {
        let trampoline: Trampoline = run::<A, R>;
        let (anchor, function, trampoline) = (anchor(), f as usize, trampoline as usize);
        if !in_code(function) || !in_code(trampoline) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the function is not in the executable that holds sockpair (in a shared \
                 library?): a worker can only find functions there",
            ));
        }
        Ok(Call {
            function: function.wrapping_sub(anchor) as isize,
            trampoline: trampoline.wrapping_sub(anchor) as isize,
        })
    }
}

/// The code of the loaded object that holds the anchor (its executable segments), found
/// once per process: the fork server finds it before its first fork, so that no worker
/// has to ask the loader again.
pub(crate) fn find_code() -> &'static [std::ops::Range<usize>] {
    static CODE: std::sync::OnceLock<Vec<std::ops::Range<usize>>> = std::sync::OnceLock::new();
    CODE.get_or_init(|| exe::code_ranges(anchor()))
}

/// Whether `addr` is in the code of the object that holds the anchor.
fn in_code(addr: usize) -> bool {
    find_code().iter().any(|code| code.contains(&addr))
}

/// Runs the call in the worker: finds both functions at their distances from this
/// process's anchor, and calls the trampoline.
///
/// # Errors
///
/// A message saying so if either address falls outside the anchor's object's code.
pub(crate) fn call(call: Call, argument: &[u8]) -> Result<Outcome, String> {
    let anchor = anchor();
    let function = anchor.wrapping_add_signed(call.function);
    let trampoline = anchor.wrapping_add_signed(call.trampoline);
    if !in_code(function) || !in_code(trampoline) {
        return Err(format!(
            "no function of this executable is at {:+#x} or {:+#x} from sockpair's anchor",
            call.function, call.trampoline
        ));
    }
    // SAFETY: `trampoline` is the address of a `run::<A, R>` for some `A` and `R`, whose
    // type is `Trampoline` whatever they are: the parent took the distance from its own
    // `run::<A, R>` (`Call::of`), it runs the same executable file as this process
    // (checked in `serve` before the first call), and the same file maps the same code
    // at the same distances from the anchor; the address lies in the anchor's object's
    // code.
    let trampoline = unsafe { std::mem::transmute::<*const (), Trampoline>(trampoline as _) };
    Ok(trampoline(function, argument))
}

/// The trampoline: decodes `A`, calls the `fn(A) -> R` at `function`, encodes `R`.
fn run<A: DeserializeOwned, R: Serialize>(function: usize, argument: &[u8]) -> Outcome {
    // SAFETY: `function` is the address of an `fn(A) -> R` with this very `A` and `R`:
    // the parent sent it together with the distance of this monomorphization of `run`
    // (`Call::of::<A, R>` takes both from one `fn(A) -> R`), from the same executable.
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(function as _) };
    let argument = match postcard::from_bytes::<A>(argument) {
        Ok(argument) => argument,
        Err(err) => {
            return Outcome::ArgumentDecode(format!(
                "the argument did not decode as {} in the worker: {err}",
                std::any::type_name::<A>()
            ));
        }
    };
    match postcard::to_allocvec(&f(argument)) {
        Ok(bytes) => Outcome::Returned(bytes),
        Err(err) => Outcome::ResultEncode(format!(
            "the result did not encode as {} in the worker: {err}",
            std::any::type_name::<R>()
        )),
    }
}

/// Takes the worker's end at [`FD`], close-on-exec from here on, if it is a socket.
///
/// Only called by `init` in a process that the environment names as a worker (or the
/// fork server) by its own pid, which only sockpair's spawn writes, between fork and
/// exec, after placing the end at [`FD`] and closing every other descriptor above 2; or
/// in a worker the fork server forked, after `Alone::become_worker_process` placed the
/// end there and closed everything else.
pub(crate) fn claim_end() -> io::Result<Socket> {
    // SAFETY: the socket at FD was put there by the spawn (or the fork server's fork)
    // that made this process a worker, and nothing in the process claimed it before:
    // the callers are `init` and the forked worker's start, each of which runs once and
    // exits without returning to code that could hold the number.
    unsafe { claim_fd(FD) }.map_err(|err| claim_error(&format!("fd {FD}"), &err))
}
