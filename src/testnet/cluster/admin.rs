//! A process cluster's admin side: operator clients, bootstrap, and the
//! waits for readiness, a leader, a status or a rejoin.

use std::time::Duration;

use tokio::time::Instant;

use super::{CALL_TIMEOUT, POLL, ProcessCluster, STATUS_TIMEOUT, tail};
use crate::cluster::admin::{Client, Status};

impl ProcessCluster {
    /// An operator's admin client for node `i` whose calls take at most
    /// `timeout` (with the operator's certificate under TLS).
    ///
    /// # Errors
    ///
    /// The operator's TLS files cannot be read.
    pub fn client_within(&self, i: usize, timeout: Duration) -> Result<Client, String> {
        let client = Client::new(self.addr(i), timeout);
        match self.operator_tls() {
            Some(tls) => client
                .with_tls(&tls)
                .map_err(|e| format!("operator TLS: {e}")),
            None => Ok(client),
        }
    }

    /// An operator's admin client for node `i`.
    ///
    /// # Errors
    ///
    /// As [`Self::client_within`].
    pub fn client(&self, i: usize) -> Result<Client, String> {
        self.client_within(i, CALL_TIMEOUT)
    }

    /// Bootstraps the cluster through node `i`, retrying while it starts.
    ///
    /// # Errors
    ///
    /// The last failure, when node `i` does not answer within `within`.
    pub async fn initialize(&self, i: usize, within: Duration) -> Result<(), String> {
        self.client(i)?
            .initialize_within(within)
            .await
            .map(|_| ())
            .map_err(|e| format!("initialize via node {i}: {e}"))
    }

    /// Node `i`'s status, asked with a short timeout.
    ///
    /// # Errors
    ///
    /// The node does not answer.
    pub async fn status(&self, i: usize) -> Result<Status, String> {
        self.client_within(i, STATUS_TIMEOUT)?
            .status()
            .await
            .map_err(|e| format!("node {i}'s status: {e}"))
    }

    /// Waits until every node in `nodes` names the same leader, the leader
    /// is among them, and each of them expects grants to commit. Returns
    /// the leader.
    ///
    /// # Errors
    ///
    /// Not within `within`; the error shows each node's last status.
    pub async fn wait_ready(&self, nodes: &[usize], within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        loop {
            let mut statuses = Vec::new();
            for &i in nodes {
                statuses.push(self.status(i).await.ok());
            }
            let leaders: Vec<Option<u64>> = statuses
                .iter()
                .map(|s| s.as_ref().and_then(|s| s.leader))
                .collect();
            if let Some(Some(leader)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*leader))
                && nodes.contains(&(*leader as usize))
                && statuses
                    .iter()
                    .all(|s| s.as_ref().is_some_and(|s| s.has_quorum_leader))
            {
                return Ok(*leader as usize);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nodes {nodes:?} not ready within {within:?}: {statuses:#?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The leader, as the running nodes agree on it: one of them names it
    /// and it says it leads.
    ///
    /// # Errors
    ///
    /// No such leader within `within`.
    pub async fn leader(&self, within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        loop {
            let running = self.running();
            for &i in &running {
                if let Ok(status) = self.status(i).await
                    && let Some(leader) = status.leader.map(|l| l as usize)
                    && running.contains(&leader)
                    && self.status(leader).await.is_ok_and(|s| s.role == "Leader")
                {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no leader within {within:?}"));
            }
            tokio::time::sleep(POLL * 2).await;
        }
    }

    /// Waits until node `i`'s status satisfies `pred`; returns it.
    ///
    /// # Errors
    ///
    /// Not within `within`; the error shows the last status and the tail
    /// of the node's log.
    pub async fn wait_status(
        &self,
        i: usize,
        what: &str,
        within: Duration,
        pred: impl Fn(&Status) -> bool,
    ) -> Result<Status, String> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status(i).await;
            if let Ok(s) = &status
                && pred(s)
            {
                return Ok(s.clone());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "node {i}: not {what} within {within:?}: {status:#?}\n{}",
                    tail(&self.log(i), 30)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until node `i` (say, restarted) follows a leader that has a
    /// quorum.
    ///
    /// # Errors
    ///
    /// As [`Self::wait_status`].
    pub async fn wait_rejoined(&self, i: usize, within: Duration) -> Result<(), String> {
        self.wait_status(i, "rejoined", within, |s| {
            s.has_quorum_leader && s.leader.is_some()
        })
        .await
        .map(|_| ())
    }
}
