//! The admin calls a local network needs: bootstrap the cluster, find
//! the leader.

use std::time::Duration;

use tokio::time::Instant;

/// Bootstraps a loopback cluster through node 1's admin API, retrying
/// while the node starts.
///
/// # Errors
///
/// When node 1 does not answer within `within`.
pub async fn initialize_cluster(ports: &[u16], within: Duration) -> Result<(), String> {
    initialize_cluster_at(&format!("127.0.0.1:{}", ports[0]), within).await
}

/// Bootstraps a cluster through the admin API of the node at `addr`
/// (host:port), retrying while the node starts.
///
/// # Errors
///
/// When the node does not answer within `within`.
pub async fn initialize_cluster_at(addr: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match crate::cluster::admin::initialize(addr, Duration::from_secs(2)).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The leader as the first reachable node reports it.
pub async fn find_leader(ports: &[u16]) -> Option<(u64, u64)> {
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    find_leader_at(&addrs).await
}

/// The leader (and term) as the first reachable node at `addrs`
/// (host:port) reports it.
pub async fn find_leader_at(addrs: &[String]) -> Option<(u64, u64)> {
    for addr in addrs {
        if let Ok(status) = crate::cluster::admin::status(addr, Duration::from_millis(500)).await
            && let Some(leader) = status.leader
        {
            return Some((leader, status.term));
        }
    }
    None
}
