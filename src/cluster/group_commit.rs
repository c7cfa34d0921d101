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
//!
//! A command that finds no write in flight and nobody waiting is written
//! by its own proposer instead ([`Queue::claim_idle`]): the hand-offs to
//! the writer task and back are a good part of a lone grant's latency.
//! Either way at most one write is in flight, and what arrives meanwhile
//! waits for the writer.

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
    state: Mutex<State<E>>,
    // Wakes the writer; a wake-up with no writer waiting is kept for it.
    wake: Notify,
}

struct State<E> {
    waiting: Vec<Waiter<E>>,
    /// A write (the writer's or a proposer's own) is in flight.
    writing: bool,
}

impl<E> Default for Queue<E> {
    fn default() -> Self {
        Queue {
            state: Mutex::new(State {
                waiting: Vec::new(),
                writing: false,
            }),
            wake: Notify::new(),
        }
    }
}

/// The right to write, held by whoever writes now; dropping it (the write
/// done, or its caller gone) lets the writer take what waits.
pub struct Writing<'a, E> {
    queue: &'a Queue<E>,
}

impl<E> Drop for Writing<'_, E> {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.queue.lock();
            state.writing = false;
            !state.waiting.is_empty()
        };
        if waiting {
            self.queue.wake.notify_one();
        }
    }
}

impl<E> Queue<E> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<E>> {
        // Every change below is a single push, take or flag, so a panic
        // elsewhere cannot leave the queue half-changed.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The right to write one command at once, when no write is in flight
    /// and no command waits (it would be overtaken otherwise).
    pub fn claim_idle(&self) -> Option<Writing<'_, E>> {
        let mut state = self.lock();
        if state.writing || !state.waiting.is_empty() {
            return None;
        }
        state.writing = true;
        Some(Writing { queue: self })
    }

    /// Queues `command` and wakes the writer. Returns the receiver of its
    /// outcome.
    pub fn push(
        &self,
        command: Command,
        deadline: Instant,
    ) -> oneshot::Receiver<Result<Outcome, E>> {
        let (answer, outcome) = oneshot::channel();
        self.lock().waiting.push(Waiter {
            command,
            deadline,
            queued: Instant::now(),
            answer,
        });
        self.wake.notify_one();
        outcome
    }

    /// The next commands to write, oldest first, at most [`MAX_BATCH`],
    /// with the right to write them; `None` when the queue is empty or a
    /// write is in flight (its end wakes the writer).
    pub fn next_batch(&self) -> Option<(Writing<'_, E>, Vec<Waiter<E>>)> {
        let mut state = self.lock();
        // Waiters that gave up (their grant timed out or the validator
        // went away) are not written: nobody would sign with the outcome.
        state.waiting.retain(|w| !w.answer.is_closed());
        if state.writing || state.waiting.is_empty() {
            return None;
        }
        state.writing = true;
        let take = state.waiting.len().min(MAX_BATCH);
        let batch = state.waiting.drain(..take).collect();
        Some((Writing { queue: self }, batch))
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
        let (writing, batch) = queue.next_batch().expect("two waiting");
        let commands: Vec<_> = batch.iter().map(|w| w.command.clone()).collect();
        assert_eq!(commands, vec![grant(1), grant(2)], "oldest first");
        drop(writing);
        assert!(queue.next_batch().is_none());
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_batch_commands() {
        let queue: Queue<()> = Queue::default();
        let receivers: Vec<_> = (0..MAX_BATCH + 3)
            .map(|h| queue.push(grant(h as i64), later()))
            .collect();
        assert_eq!(queue.next_batch().map(|(_, b)| b.len()), Some(MAX_BATCH));
        assert_eq!(queue.next_batch().map(|(_, b)| b.len()), Some(3));
        drop(receivers);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_is_not_written() {
        let queue: Queue<()> = Queue::default();
        let gone = queue.push(grant(1), later());
        let _kept = queue.push(grant(2), later());
        drop(gone);
        let (_writing, batch) = queue.next_batch().expect("one still waits");
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].command, grant(2));
    }

    #[tokio::test]
    async fn one_write_at_a_time_and_its_end_wakes_the_writer() {
        let queue: Queue<()> = Queue::default();
        let direct = queue.claim_idle().expect("idle");
        assert!(queue.claim_idle().is_none(), "a write is in flight");
        let _waiting = queue.push(grant(1), later());
        // The writer is woken by the push but may not write yet.
        queue.pushed().await;
        assert!(queue.next_batch().is_none(), "a write is in flight");
        drop(direct);
        tokio::time::timeout(std::time::Duration::from_secs(5), queue.pushed())
            .await
            .expect("the write's end wakes the writer");
        let (writing, batch) = queue.next_batch().expect("the waiter");
        assert_eq!(batch.len(), 1);
        assert!(queue.claim_idle().is_none(), "the writer writes");
        drop(writing);
        assert!(queue.claim_idle().is_some(), "idle again");
        let _later = queue.push(grant(2), later());
        assert!(
            queue.claim_idle().is_none(),
            "a command waits: no overtaking"
        );
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
