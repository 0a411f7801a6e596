//! [`Pool`]: `n` worker processes, reused for task after task.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::entry::Call;
use super::error::Error;
use super::options::Options;
use super::process::{Killer, NoAnswer, Process, Word};
use super::{Handle, wire};

/// A pool of `n` worker processes that run tasks one at a time each, in the order they
/// were submitted, as Python's `multiprocessing.Pool` and procspawn's `Pool` do, but a
/// worker that dies fails only the task it was running: its [`Handle`] reports how it
/// ended ([`Error::Died`]), a new worker takes its place, and every other task runs. A
/// task never runs on a worker that has died (an idle worker killed from outside) or
/// sent something unasked: it goes to a fresh worker; and a worker whose answer names
/// another task, or never ends (a frame its function began on fd 3), is out of step:
/// the task fails with [`Error::Decode`], and the worker is replaced.
///
/// ```
/// # sockpair::worker::init_before_main!();
/// use sockpair::worker::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = Pool::new(2)?;
/// let squares: Vec<u64> = pool.map(square, 1..=5).collect::<Result<_, _>>()?;
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// let one = pool.spawn(square, 12);
/// assert_eq!(one.join()?, 144);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Each worker is served by a thread of this process, which hands it the next task and
/// waits for the answer or the worker's end. Dropping the pool kills the workers still
/// running a task (their handles report [`Error::Died`]), fails the tasks not yet
/// started ([`Error::Killed`]), closes the idle workers' ends (they exit), reaps every
/// worker and joins its threads.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.threads.len())
            .finish_non_exhaustive()
    }
}

/// What the pool's threads share: the queue and each thread's current task.
struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    /// How workers start, replacements included.
    options: Options,
}

struct Queue {
    tasks: VecDeque<Task>,
    /// The task each thread runs, for the pool's drop to kill.
    running: Vec<Option<Arc<Slot>>>,
    closed: bool,
}

struct Task {
    id: u64,
    request: Vec<u8>,
    slot: Arc<Slot>,
}

/// How many fresh workers a task that was never delivered is offered before the last
/// one's death is reported as its outcome (workers that die as they start).
const DELIVERY_ATTEMPTS: usize = 3;

/// One task's state, shared by its [`Handle`] and the thread that runs it.
pub(crate) struct Slot {
    state: Mutex<State>,
    done: Condvar,
}

enum State {
    Queued,
    /// A new worker is being started for it, the task already in its pair: a kill waits
    /// (`kill`) until the worker is known.
    Starting {
        kill: bool,
    },
    /// A worker runs it. A `kill` goes through the worker's pidfd (never to another
    /// process that got its pid); without pidfds (before Linux 5.3) the worker is our
    /// own child, reaped only after the state has left `Running` (under this lock), so
    /// a `kill` by pid that sees `Running` never signals a reused pid either.
    /// `killed`: a kill was sent, so the worker is not reused even if it answered.
    Running {
        pid: u32,
        killer: Killer,
        killed: bool,
    },
    /// Its worker is gone and being reaped, to say how it ended.
    Ending,
    /// Its answer, or why there is none, not yet taken.
    Done(Result<Vec<u8>, Error>),
    Taken,
}

impl Slot {
    fn new(state: State) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(state),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Moves a queued task to `Running`; `false` if it was killed meanwhile.
    fn start(&self, pid: u32, killer: Killer) -> bool {
        let mut state = self.lock();
        match *state {
            State::Queued => {
                *state = State::Running {
                    pid,
                    killer,
                    killed: false,
                };
                true
            }
            _ => false,
        }
    }

    /// Takes a queued task for a worker about to start with it; `false` if it was
    /// killed or abandoned meanwhile (then nothing starts for it).
    fn claim(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Queued => {
                *state = State::Starting { kill: false };
                true
            }
            _ => false,
        }
    }

    /// The worker started with a claimed task is known: a kill asked for meanwhile is
    /// sent now.
    fn started(&self, pid: u32, killer: Killer) {
        let mut state = self.lock();
        let killed = matches!(*state, State::Starting { kill: true }) && killer.kill().is_ok();
        *state = State::Running {
            pid,
            killer,
            killed,
        };
    }

    /// Records the task's outcome; returns whether its worker was sent a kill.
    fn finish(&self, outcome: Result<Vec<u8>, Error>) -> bool {
        let mut state = self.lock();
        let killed = matches!(
            *state,
            State::Running { killed: true, .. } | State::Starting { kill: true }
        );
        if matches!(
            *state,
            State::Queued | State::Starting { .. } | State::Running { .. } | State::Ending
        ) {
            *state = State::Done(outcome);
        }
        // Woken after the lock is let go: a joiner woken under it would wait for it
        // again at once (on one CPU, two more switches per task).
        drop(state);
        self.done.notify_all();
        killed
    }

    /// Leaves `Running` before the worker is reaped: no kill reaches its pid after this.
    fn ending(&self) {
        *self.lock() = State::Ending;
    }

    /// Puts a task whose worker died before taking it back to `Queued`, for another
    /// worker; `false` if it was killed meanwhile (its death is then its outcome).
    fn requeue(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Running { killed: false, .. } => {
                *state = State::Queued;
                true
            }
            _ => false,
        }
    }

    /// The worker's pid while it runs the task.
    pub(crate) fn pid(&self) -> Option<u32> {
        match *self.lock() {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Waits until `deadline` for the answer; `None` if it passed first.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Option<Result<Vec<u8>, Error>> {
        let mut state = self.lock();
        loop {
            match std::mem::replace(&mut *state, State::Taken) {
                State::Done(outcome) => return Some(outcome),
                State::Taken => {
                    return Some(Err(Error::Io(io::Error::other(
                        "the result was already taken by an earlier join_timeout",
                    ))));
                }
                waiting => *state = waiting,
            }
            state = match deadline {
                None => self.done.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.done
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Ends the task: a queued one never starts ([`Error::Killed`]); a running one's
    /// worker is killed (`SIGKILL`), and its handle reports that death.
    pub(crate) fn kill(&self) -> io::Result<()> {
        let mut state = self.lock();
        match *state {
            State::Queued => {
                *state = State::Done(Err(Error::Killed));
                drop(state);
                self.done.notify_all();
                Ok(())
            }
            State::Starting { ref mut kill } => {
                *kill = true;
                Ok(())
            }
            State::Running {
                ref killer,
                ref mut killed,
                ..
            } => {
                killer.kill()?;
                *killed = true;
                Ok(())
            }
            State::Ending | State::Done(_) | State::Taken => Ok(()),
        }
    }

    /// A dropped handle's task: not started, it never will be; running, it runs on and
    /// its answer is dropped.
    pub(crate) fn abandon(&self) {
        let mut state = self.lock();
        if matches!(*state, State::Queued) {
            *state = State::Taken;
        }
    }
}

impl Pool {
    /// The most workers a pool may have (each is a process and a thread of ours).
    pub const MAX_SIZE: usize = 4096;

    /// Starts `n` workers (each as [`spawn`](super::spawn) starts one) and a thread of
    /// this process for each.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::InvalidInput`] for `n == 0` or `n` over [`Pool::MAX_SIZE`]; the
    /// error of starting a worker or a thread (then none is left running); an error
    /// naming [`init`](super::init), before anything starts, if it did not run.
    pub fn new(n: usize) -> io::Result<Pool> {
        Pool::with_options(n, &Options::default())
    }

    /// [`Pool::new`], its workers started as `options` say.
    pub(crate) fn with_options(n: usize, options: &Options) -> io::Result<Pool> {
        super::serve::check_initialized()?;
        if n == 0 || n > Pool::MAX_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a pool of {n} workers: it needs at least one, and at most {}",
                    Pool::MAX_SIZE
                ),
            ));
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                tasks: VecDeque::new(),
                running: vec![None; n],
                closed: false,
            }),
            work: Condvar::new(),
            options: options.clone(),
        });
        let mut pool = Pool {
            shared,
            threads: Vec::with_capacity(n),
        };
        for index in 0..n {
            // A failure drops `pool`: all is ended.
            let (process, _) = Process::start(&pool.shared.options, Some(Word::new()?), None)?;
            let shared = Arc::clone(&pool.shared);
            let thread = std::thread::Builder::new()
                .name(format!("sockpair-pool-{index}"))
                .spawn(move || serve(&shared, index, process))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// How many workers the pool has.
    pub fn size(&self) -> usize {
        self.threads.len()
    }

    /// Queues `f(arg)` for the next free worker. What can go wrong, the argument not
    /// encoding included, is reported by the handle's [`join`](Handle::join).
    ///
    /// The handle's [`kill`](Handle::kill) cancels the task if it has not started and
    /// kills its worker if it runs (a new worker takes the worker's place); dropping the
    /// handle cancels a task not yet started and lets a running one finish.
    pub fn spawn<A, R>(&self, f: fn(A) -> R, arg: A) -> Handle<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        let request = Call::of(f)
            .map_err(|err| Error::NotFound(err.to_string()))
            .and_then(|call| wire::request(call, false, &arg));
        match request {
            Ok((id, request)) => {
                let slot = Slot::new(State::Queued);
                let mut queue = self.shared.lock();
                queue.tasks.push_back(Task {
                    id,
                    request,
                    slot: Arc::clone(&slot),
                });
                drop(queue);
                self.shared.work.notify_one();
                Handle::pooled(id, slot)
            }
            Err(err) => Handle::pooled(wire::UNREAD, Slot::new(State::Done(Err(err)))),
        }
    }

    /// Runs `f` on every item of `items` across the pool, and yields the results in the
    /// order of the items, each as its own `Result`: a task that fails does not stop the
    /// others. At most twice the pool's size of tasks are queued ahead of the one being
    /// yielded, so `items` may be endless; dropping the iterator cancels the queued ones.
    pub fn map<'pool, A, R, I>(
        &'pool self,
        f: fn(A) -> R,
        items: I,
    ) -> impl Iterator<Item = Result<R, Error>> + 'pool
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
        A: 'pool,
        R: 'pool,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'pool,
    {
        let mut items = items.into_iter();
        let ahead = 2 * self.size();
        let mut queued: VecDeque<Handle<R>> = VecDeque::with_capacity(ahead);
        std::iter::from_fn(move || {
            while queued.len() < ahead {
                match items.next() {
                    Some(item) => queued.push_back(self.spawn(f, item)),
                    None => break,
                }
            }
            queued.pop_front().map(Handle::join)
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One pool thread: takes the next task, runs it on its worker, starting a new worker
/// when the last one died or is out of step; ends when the pool is dropped.
fn serve(shared: &Shared, index: usize, process: Process) {
    let mut process = Some(process);
    // The delivery word of the last worker that ended, for the next one.
    let mut spare = None;
    loop {
        let task = {
            let mut queue = shared.lock();
            loop {
                if queue.closed {
                    queue.running[index] = None;
                    drop(queue);
                    if let Some(process) = process {
                        process.close();
                    }
                    return;
                }
                match queue.tasks.pop_front() {
                    Some(task) => break task,
                    None => {
                        queue = shared
                            .work
                            .wait(queue)
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                    }
                }
            }
        };
        process = run_task(shared, index, process, &mut spare, &task);
    }
}

/// Runs `task` on `process` (or a fresh worker, if that one is gone or out of step):
/// returns the worker to keep for the next task, if it can be reused. A worker that
/// died before taking the task never ran it: the task goes to a fresh worker. A
/// worker that ends leaves its delivery word in `spare`, for the next one.
fn run_task(
    shared: &Shared,
    index: usize,
    mut process: Option<Process>,
    spare: &mut Option<Word>,
    task: &Task,
) -> Option<Process> {
    let mut attempt = 1;
    loop {
        let (mut worker, answer) = match process.take() {
            Some(worker) if worker.idle_and_in_step() => {
                if !task.slot.start(worker.pid(), worker.killer()) {
                    return Some(worker); // killed or abandoned while queued
                }
                shared.lock().running[index] = Some(Arc::clone(&task.slot));
                let mut worker = worker;
                let answer = worker
                    .send(&task.request)
                    .and_then(|()| worker.answer(None));
                (worker, answer)
            }
            stale => {
                if let Some(mut stale) = stale {
                    let _ = stale.kill_and_reap();
                    retire(stale, spare);
                }
                if !task.slot.claim() {
                    return None; // killed or abandoned while queued
                }
                // The task goes with the new worker's start (see `Process::start`).
                shared.lock().running[index] = Some(Arc::clone(&task.slot));
                let started = match spare.take() {
                    Some(word) => Ok(word),
                    None => Word::new(),
                }
                .and_then(|word| Process::start(&shared.options, Some(word), Some(&task.request)));
                let (mut worker, early_end) = match started {
                    Ok(started) => started,
                    Err(err) => {
                        shared.lock().running[index] = None;
                        task.slot.finish(Err(Error::Io(err)));
                        return None;
                    }
                };
                task.slot.started(worker.pid(), worker.killer());
                let answer = match early_end {
                    Some(no_answer) => Err(no_answer),
                    None => worker.answer(None),
                };
                (worker, answer)
            }
        };
        shared.lock().running[index] = None;
        match answer {
            Ok(answer) if wire::answers(&answer, task.id) => {
                return match task.slot.finish(Ok(answer)) {
                    false if !worker.probed() => Some(worker),
                    _ => {
                        // Killed as it answered, or probed (it ends): not reused.
                        drop(worker.death());
                        retire(worker, spare);
                        None
                    }
                };
            }
            Ok(out_of_step) => {
                // Never reused: what comes next from it would answer the wrong task.
                task.slot.ending();
                let _ = worker.kill_and_reap();
                retire(worker, spare);
                task.slot.finish(Ok(out_of_step));
                return None;
            }
            Err(NoAnswer::Failed(err)) => {
                let _ = worker.kill();
                task.slot.finish(Err(err));
                let _ = worker.reap();
                retire(worker, spare);
                return None;
            }
            Err(NoAnswer::Ended | NoAnswer::Timeout) => {
                let undelivered = worker.taken() != Some(task.id);
                if undelivered && attempt < DELIVERY_ATTEMPTS && task.slot.requeue() {
                    drop(worker.death()); // it never ran this task: not its outcome
                    retire(worker, spare);
                    attempt += 1;
                    continue;
                }
                task.slot.ending();
                task.slot.finish(Err(worker.death()));
                retire(worker, spare);
                return None;
            }
        }
    }
}

/// A worker that is not reused, reaped: its delivery word goes to `spare`, for the
/// next worker.
fn retire(worker: Process, spare: &mut Option<Word>) {
    if let Some(word) = worker.into_word() {
        *spare = Some(word);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.closed = true;
        for task in queue.tasks.drain(..) {
            task.slot.finish(Err(Error::Killed));
        }
        for slot in queue.running.iter().flatten() {
            let _ = slot.kill();
        }
        drop(queue);
        self.shared.work.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
