//! A simulated operator that changes the cluster's membership during a
//! run, through the real admin API (gRPC over the simulated network) and
//! the membership code behind it: it adds a spare node as a learner,
//! promotes it once it has caught up, and later removes it again (moving
//! leadership away first when the spare leads). Every call that fails or is
//! refused, for example while a fault cuts off the node it asked, is
//! retried on the next node after a pause.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cluster::admin::{Client, ClientError};

use super::net::SimTransport;
use super::trace::{Trace, now};

/// Pause before a failed or refused call is retried.
const RETRY_INTERVAL: Duration = Duration::from_millis(300);
/// Timeout of one admin call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What the operator does, and when.
#[derive(Clone, Debug)]
pub struct OperatorPlan {
    /// Admin addresses (`host:port`) of the nodes it may ask.
    pub nodes: Vec<String>,
    /// The spare node's id.
    pub spare: u64,
    /// The spare node's address.
    pub spare_addr: String,
    /// Voter ids leadership may move to before the spare is removed.
    pub others: Vec<u64>,
    /// When it adds the spare.
    pub add_at: Duration,
    /// How long the spare stays a voter before it is removed.
    pub keep_for: Duration,
}

/// Set once the spare has been removed, so the harness stops it.
pub type Removed = Arc<AtomicBool>;

struct Operator {
    plan: OperatorPlan,
    client: Client,
    next: usize,
    trace: Trace,
}

impl Operator {
    /// Runs `call` on the next node until it succeeds or `done` says the
    /// refusal means the change is already made.
    async fn until_done<F, Fut>(&mut self, what: &str, done: fn(&ClientError) -> bool, call: F)
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<String, ClientError>>,
    {
        loop {
            let client = self
                .client
                .to(self.plan.nodes[self.next % self.plan.nodes.len()].clone());
            match call(client).await {
                Ok(message) => {
                    self.trace
                        .event(now(), format!("operator {what}: {message}"));
                    return;
                }
                Err(e) if done(&e) => {
                    self.trace
                        .event(now(), format!("operator {what}: already done ({e})"));
                    return;
                }
                Err(e) => {
                    self.trace
                        .event(now(), format!("operator {what} failed: {e}"));
                    self.next += 1;
                    tokio::time::sleep(RETRY_INTERVAL).await;
                }
            }
        }
    }
}

/// Runs the operator's plan to its end.
///
/// # Errors
///
/// Never: every failure is traced and retried.
pub async fn run(plan: OperatorPlan, removed: Removed, trace: Trace) -> turmoil::Result {
    let client =
        Client::new(plan.nodes[0].clone(), CALL_TIMEOUT).with_transport(Arc::new(SimTransport));
    let mut op = Operator {
        plan,
        client,
        next: 0,
        trace,
    };
    tokio::time::sleep(op.plan.add_at).await;
    let (spare, spare_addr) = (op.plan.spare, op.plan.spare_addr.clone());
    op.until_done(
        "add-learner",
        |e| e.to_string().contains("already a member"),
        |c| {
            let addr = spare_addr.clone();
            async move { c.add_learner(spare, &addr).await }
        },
    )
    .await;
    op.until_done(
        "promote",
        |e| e.to_string().contains("already a voter"),
        |c| async move { c.promote(spare).await },
    )
    .await;
    tokio::time::sleep(op.plan.keep_for).await;
    let mut attempt = 0usize;
    loop {
        let client = op
            .client
            .to(op.plan.nodes[op.next % op.plan.nodes.len()].clone());
        match client.remove(spare, false).await {
            Ok(message) => {
                op.trace.event(now(), format!("operator remove: {message}"));
                break;
            }
            Err(e) if e.to_string().contains("not a member") => {
                op.trace
                    .event(now(), format!("operator remove: already done ({e})"));
                break;
            }
            Err(e) if e.to_string().contains("is the leader") => {
                // The spare leads: move leadership to another voter first.
                let target = op.plan.others[attempt % op.plan.others.len()];
                attempt += 1;
                // Display, not Debug: a status's Debug carries its HTTP
                // date header, the wall clock, which the trace must not.
                let moved = match client.transfer_leader(target).await {
                    Ok(message) => message,
                    Err(e) => format!("failed: {e}"),
                };
                op.trace
                    .event(now(), format!("operator transfer-leader {target}: {moved}"));
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            Err(e) => {
                op.trace
                    .event(now(), format!("operator remove failed: {e}"));
                op.next += 1;
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
        }
    }
    removed.store(true, Ordering::SeqCst);
    Ok(())
}
