//! The running executable, for the worker: which loaded object holds an address.

pub(crate) use crate::sys::process::code_ranges;
