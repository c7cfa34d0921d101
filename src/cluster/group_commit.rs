//! Group commit on the leader: commands proposed while the leader's
//! previous write is still in flight wait here, and the next write carries
//! all of them as one [`Command::Batch`] entry, so they share one log
//! append and one fsync on every node. Throughput then grows with the
//! number of concurrent grants instead of being bounded by fsyncs.
//!
//! The queue is plain data and a wake-up; `propose` runs the node's one
//! writer task, which drains it and answers each waiter with its own
//! command's outcome. The writer is spawned once, with the node's other
//! tasks, rather than per write: a proposal may come from a task the
//! simulation's runtime cannot spawn from (a gRPC handler), and a
//! long-lived writer cannot be cancelled half-way by a caller going away.

use std::sync::Mutex;

use tokio::sync::{Notify, oneshot};
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
///
/// One writer drains it: openraft appends and replicates entries one after
/// another anyway, and a second writer only splits batches (measured:
/// fewer grants per second, not more).
pub struct Queue<E> {
    waiting: Mutex<Vec<Waiter<E>>>,
    // Wakes the writer; a wake-up with no writer waiting is kept for it.
    wake: Notify,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
        }
    }
}

impl<E> Queue<E> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiter<E>>> {
        // Every change below is a single push or take, so a panic elsewhere
        // cannot leave the queue half-changed.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `command` and wakes the writer. Returns the receiver of its
    /// outcome.
    pub fn push(
        &self,
        command: Command,
        deadline: Instant,
    ) -> oneshot::Receiver<Result<Outcome, E>> {
        let (answer, outcome) = oneshot::channel();
        self.lock().push(Waiter {
            command,
            deadline,
            queued: Instant::now(),
            answer,
        });
        self.wake.notify_one();
        outcome
    }

    /// The next commands to write, oldest first, at most [`MAX_BATCH`];
    /// `None` when the queue is empty.
    pub fn next_batch(&self) -> Option<Vec<Waiter<E>>> {
        let mut waiting = self.lock();
        // Waiters that gave up (their grant timed out or the validator
        // went away) are not written: nobody would sign with the outcome.
        waiting.retain(|w| !w.answer.is_closed());
        if waiting.is_empty() {
            return None;
        }
        let take = waiting.len().min(MAX_BATCH);
        Some(waiting.drain(..take).collect())
    }

    /// Waits until a command is pushed (at once if one was pushed since
    /// the last wait).
    pub async fn pushed(&self) {
        self.wake.notified().await;
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
    use crate::watermark::Verdict;

    fn grant(height: i64) -> Command {
        crate::cluster::tests::prevote_grant("c", height, &[height as u8])
    }

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(10)
    }

    #[tokio::test]
    async fn batches_are_oldest_first_and_a_push_wakes_the_writer() {
        let queue: Queue<()> = Queue::default();
        assert!(queue.next_batch().is_none());
        let _a = queue.push(grant(1), later());
        let _b = queue.push(grant(2), later());
        // The wake-up was kept although no writer was waiting.
        tokio::time::timeout(std::time::Duration::from_secs(5), queue.pushed())
            .await
            .expect("woken");
        let batch = queue.next_batch().expect("two waiting");
        let commands: Vec<_> = batch.iter().map(|w| w.command.clone()).collect();
        assert_eq!(commands, vec![grant(1), grant(2)], "oldest first");
        assert!(queue.next_batch().is_none());
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch_commands() {
        let queue: Queue<()> = Queue::default();
        let receivers: Vec<_> = (0..MAX_BATCH + 3)
            .map(|h| queue.push(grant(h as i64), later()))
            .collect();
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(MAX_BATCH));
        assert_eq!(queue.next_batch().map(|b| b.len()), Some(3));
        drop(receivers);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_not_written() {
        let queue: Queue<()> = Queue::default();
        let gone = queue.push(grant(1), later());
        let _kept = queue.push(grant(2), later());
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
