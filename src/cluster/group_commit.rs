//! Group commit on the leader: commands proposed while the leader's
//! previous write is still in flight wait here, and the next write carries
//! all of them as one [`Command::Batch`] entry, so they share one log
//! append and one fsync on every node. Throughput then grows with the
//! number of concurrent grants instead of being bounded by fsyncs.
//!
//! The queue is plain data; `propose` runs the one writer task that drains
//! it, and answers each waiter with its own command's outcome.

use std::sync::Mutex;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::types::{Command, Outcome};

/// Most commands one entry carries: bounds an entry's size (each grant
/// holds its sign bytes) well below a replication message's limit.
pub const MAX_BATCH: usize = 256;

/// A command waiting for the next write, and where its outcome goes.
pub struct Waiter<E> {
    /// The command.
    pub command: Command,
    /// When its proposer stops waiting.
    pub deadline: Instant,
    /// When it joined the queue.
    pub queued: Instant,
    /// Its outcome, or the write's error.
    pub answer: oneshot::Sender<Result<Outcome, E>>,
}

/// The commands waiting for the next write. `E` is the write's error.
pub struct Queue<E> {
    inner: Mutex<Inner<E>>,
}

struct Inner<E> {
    waiting: Vec<Waiter<E>>,
    // A writer task is draining the queue. One at a time: openraft appends
    // and replicates entries one after another anyway, and a second writer
    // only splits batches (measured: fewer grants per second, not more).
    writing: bool,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            inner: Mutex::new(Inner {
                waiting: Vec::new(),
                writing: false,
            }),
        }
    }
}

impl<E> Queue<E> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<E>> {
        // Every change below is a single push, take or flag flip, so a
        // panic elsewhere cannot leave the queue half-changed.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `command`. Returns the receiver of its outcome, and whether
    /// the caller must start a writer (none is draining the queue).
    pub fn push(
        &self,
        command: Command,
        deadline: Instant,
    ) -> (oneshot::Receiver<Result<Outcome, E>>, bool) {
        let (answer, outcome) = oneshot::channel();
        let mut inner = self.lock();
        inner.waiting.push(Waiter {
            command,
            deadline,
            queued: Instant::now(),
            answer,
        });
        let start_writer = !inner.writing;
        inner.writing = true;
        (outcome, start_writer)
    }

    /// The next commands to write, oldest first, at most [`MAX_BATCH`];
    /// `None` when the queue is empty, and the writer stops: the next
    /// [`Queue::push`] starts another.
    pub fn next_batch(&self) -> Option<Vec<Waiter<E>>> {
        let mut inner = self.lock();
        // Waiters that gave up (their grant timed out or the validator
        // went away) are not written: nobody would sign with the outcome.
        inner.waiting.retain(|w| !w.answer.is_closed());
        if inner.waiting.is_empty() {
            inner.writing = false;
            return None;
        }
        let take = inner.waiting.len().min(MAX_BATCH);
        Some(inner.waiting.drain(..take).collect())
    }
}

/// The one entry that carries `commands`: the command itself when alone.
pub fn entry(mut commands: Vec<Command>) -> Command {
    if commands.len() == 1
        && let Some(command) = commands.pop()
    {
        return command;
    }
    Command::Batch(commands)
}

/// Splits an entry's outcome back over the `count` commands it carried.
/// `None` when the outcome does not match them: a bug in `apply`.
pub fn split(outcome: Outcome, count: usize) -> Option<Vec<Outcome>> {
    match outcome {
        Outcome::Batch(outcomes) if count > 1 && outcomes.len() == count => Some(outcomes),
        Outcome::Batch(_) => None,
        single if count == 1 => Some(vec![single]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watermark::{Attempt, Position, Step, Verdict};

    fn grant(height: i64) -> Command {
        Command::Grant {
            chain_id: "c".into(),
            attempt: Attempt {
                position: Position {
                    height,
                    round: 0,
                    step: Step::Prevote,
                },
                sign_bytes: vec![height as u8],
                origin: None,
            },
        }
    }

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(10)
    }

    #[tokio::test]
    async fn the_first_push_starts_a_writer_and_later_ones_join_its_queue() {
        let queue: Queue<()> = Queue::default();
        let (_a, start_a) = queue.push(grant(1), later());
        let (_b, start_b) = queue.push(grant(2), later());
        assert!(start_a);
        assert!(!start_b, "a writer is already draining the queue");
        let batch = queue.next_batch().expect("two waiting");
        let heights: Vec<_> = batch.iter().map(|w| w.command.clone()).collect();
        assert_eq!(heights, vec![grant(1), grant(2)], "oldest first");
        assert!(queue.next_batch().is_none(), "empty: the writer stops");
        let (_c, start_c) = queue.push(grant(3), later());
        assert!(start_c, "after the writer stopped, a push starts another");
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch_commands() {
        let queue: Queue<()> = Queue::default();
        let receivers: Vec<_> = (0..MAX_BATCH + 3)
            .map(|h| queue.push(grant(h as i64), later()).0)
            .collect();
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(MAX_BATCH));
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(3));
        drop(receivers);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_not_written() {
        let queue: Queue<()> = Queue::default();
        let (gone, _) = queue.push(grant(1), later());
        let (_kept, _) = queue.push(grant(2), later());
        drop(gone);
        let batch = queue.next_batch().expect("one still waits");
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].command, grant(2));
    }

    #[test]
    fn one_command_is_its_own_entry_and_several_are_a_batch() {
        assert_eq!(entry(vec![grant(1)]), grant(1));
        assert_eq!(
            entry(vec![grant(1), grant(2)]),
            Command::Batch(vec![grant(1), grant(2)])
        );
    }

    #[test]
    fn outcomes_split_back_only_when_they_match_the_commands() {
        let sign = |b: u8| Outcome::Granted(Verdict::Sign(vec![b]));
        assert_eq!(split(sign(1), 1), Some(vec![sign(1)]));
        assert_eq!(
            split(Outcome::Batch(vec![sign(1), sign(2)]), 2),
            Some(vec![sign(1), sign(2)])
        );
        assert_eq!(split(Outcome::Batch(vec![sign(1)]), 2), None);
        assert_eq!(split(sign(1), 2), None);
        assert_eq!(split(Outcome::Batch(vec![sign(1)]), 1), None);
    }
}
