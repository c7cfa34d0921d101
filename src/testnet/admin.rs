//! Loopback shorthands over the admin client for a local network: bootstrap
//! the cluster, find the leader.

use std::time::Duration;

use crate::cluster::admin::{Client, ClientError};

/// How long one admin call may take on loopback.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one status call may take while looking for the leader.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// Bootstraps a loopback cluster through node 1's admin API, retrying
/// while the node starts.
///
/// # Errors
///
/// The last failure, when node 1 does not answer within `within`.
pub async fn initialize_cluster(ports: &[u16], within: Duration) -> Result<(), ClientError> {
    initialize_cluster_at(&format!("127.0.0.1:{}", ports[0]), within).await
}

/// Bootstraps a cluster through the admin API of the node at `addr`
/// (host:port), retrying while the node starts.
///
/// # Errors
///
/// The last failure, when the node does not answer within `within`.
pub async fn initialize_cluster_at(addr: &str, within: Duration) -> Result<(), ClientError> {
    Client::new(addr, CALL_TIMEOUT)
        .initialize_within(within)
        .await
        .map(|_| ())
}

/// The leader and its term, as the first reachable loopback node reports
/// them.
pub async fn find_leader(ports: &[u16]) -> Option<(u64, u64)> {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    find_leader_at(&addrs).await
}

/// The leader and its term, as the first reachable node at `addrs`
/// (host:port) reports them.
pub async fn find_leader_at(addrs: &[String]) -> Option<(u64, u64)> {
    let first = addrs.first()?;
    let leader = Client::new(first.clone(), STATUS_TIMEOUT)
        .find_leader(addrs)
        .await?;
    Some((leader.id, leader.term))
}
