//! std's path: `Command::spawn`, with one `pre_exec` hook that carries out the plan.

use std::cell::Cell;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr;

use super::FdPlan;
use super::plan::carry_out;

thread_local! {
    /// The plan of the [`spawn_std`] in progress on this thread, for the hook that std
    /// runs in the forked child (a copy of this thread, and of this value).
    static PLAN: Cell<*const FdPlan> = const { Cell::new(ptr::null()) };
}

/// Marks a `Command` that carries our hook already: listed by `Command::get_envs` as a
/// removed variable, which changes nothing in any child's environment.
const HOOKED: &str = "SOCKPAIR_INTERNAL_PLAN_HOOK";

/// Spawns `cmd` through std, which honours every setting it carries (stdio, uid, gid,
/// groups, process group, `pre_exec` closures, ...), and carries out `plan` in the child
/// last, after the `Command`'s own closures.
///
/// The hook is added to a `Command` once, however often it is spawned: it acts only on
/// the plan this call sets for the spawn in progress on this thread, so the same
/// `Command` spawned again (by us, or by `Command::spawn` alone) gets the same child.
pub(crate) fn spawn_std(cmd: &mut Command, plan: &FdPlan) -> io::Result<std::process::Child> {
    if !cmd
        .get_envs()
        .any(|(key, value)| key == HOOKED && value.is_none())
    {
        // SAFETY: the hook is async-signal-safe: a thread-local read and write (a const
        // initialiser and no destructor: no lazy set-up, no allocation), then raw system
        // calls; an OS error value does not allocate.
        unsafe { cmd.pre_exec(plan_hook) };
        cmd.env_remove(HOOKED);
    }
    /// Clears `PLAN` when the spawn is over, however it ends.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            PLAN.set(ptr::null());
        }
    }
    PLAN.set(plan);
    let _clear = Clear;
    cmd.spawn()
}

/// The `pre_exec` hook: carries out the plan set by [`spawn_std`], once.
fn plan_hook() -> io::Result<()> {
    let plan = PLAN.replace(ptr::null());
    if plan.is_null() {
        return Ok(()); // not a spawn of ours, or a second hook after `env_clear`
    }
    // SAFETY: `PLAN` is non-null only while `spawn_std` runs on this thread with `plan`
    // borrowed; std runs this hook in the child it forks from this thread meanwhile,
    // whose memory is a copy of ours at that moment, `plan` included.
    carry_out(unsafe { &*plan }).map_err(|(_, errno)| io::Error::from_raw_os_error(errno))
}
