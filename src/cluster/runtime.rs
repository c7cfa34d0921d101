//! The async runtime the cluster runs on: openraft's Tokio runtime, with two
//! seams a deterministic simulation needs.
//!
//! - Randomness (election timeouts) comes from a per-thread master RNG that
//!   [`set_rng_seed`] can reset, instead of the OS-seeded `thread_rng`
//!   openraft uses by default. Without a seed the master is seeded from the
//!   OS, as in production.
//! - Every task the cluster spawns (openraft's and ours) goes through
//!   [`spawn`]. A simulation calls [`set_spawn_local`] so tasks land in the
//!   host's `LocalSet` (plain list order) rather than in Tokio's task shards,
//!   whose order depends on a process-wide counter.
//!
//! Both settings are thread-local because a simulation runs all hosts on one
//! OS thread; production never touches them.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::time::Duration;

use openraft::async_runtime::{AsyncOneshotSendExt, AsyncRuntime};
use openraft::{OptionalSend, TokioInstant};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static MASTER_RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
    static SPAWN_LOCAL: Cell<bool> = const { Cell::new(false) };
}

/// Reseeds this thread's master RNG, from which every RNG handed to openraft
/// on this thread is derived. Same seed, same election timeouts.
pub fn set_rng_seed(seed: u64) {
    MASTER_RNG.with(|m| *m.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Makes [`spawn`] on this thread use `spawn_local` (true) or the
/// multi-threaded `spawn` (false, the default). With `true`, spawning
/// outside a `LocalSet` panics, so only a simulation sets it.
pub fn set_spawn_local(local: bool) {
    SPAWN_LOCAL.with(|s| s.set(local));
}

/// Spawns a task for the cluster. All of the cluster's own tasks go through
/// here so a simulation controls where they run.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if SPAWN_LOCAL.with(|s| s.get()) {
        tokio::task::spawn_local(future)
    } else {
        tokio::task::spawn(future)
    }
}

fn derived_rng() -> StdRng {
    MASTER_RNG.with(|m| {
        let mut master = m.borrow_mut();
        let master = master.get_or_insert_with(StdRng::from_entropy);
        StdRng::seed_from_u64(master.r#gen())
    })
}

/// openraft's `TokioRuntime`, with a seedable RNG and [`spawn`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Runtime;

/// The sending half of a oneshot channel, as openraft's runtime trait wants it.
pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> std::fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneshotSender")
    }
}

impl<T: OptionalSend> AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

impl AsyncRuntime for Runtime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = tokio::task::JoinHandle<T>;
    type Sleep = tokio::time::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = tokio::time::error::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = tokio::time::Timeout<T>;
    type ThreadLocalRng = StdRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        tokio::time::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        derived_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_rngs() {
        set_rng_seed(7);
        let a: Vec<u64> = (0..3).map(|_| Runtime::thread_rng().r#gen()).collect();
        set_rng_seed(7);
        let b: Vec<u64> = (0..3).map(|_| Runtime::thread_rng().r#gen()).collect();
        assert_eq!(a, b);
        set_rng_seed(8);
        let c: Vec<u64> = (0..3).map(|_| Runtime::thread_rng().r#gen()).collect();
        assert_ne!(a, c);
    }
}
