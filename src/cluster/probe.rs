//! Peer probes for operators: a node started by `quorumkms start` pings
//! every other member now and then, so its status (and status page) can
//! say which peers it reaches, rather than leaving a dead node to be
//! inferred from a lag that stops moving. Nothing on the grant path reads
//! the result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::instance::{Instance, PeerSeen};
use super::network::{self, Channels};

/// Pings every member but this node each `every`, until `shutdown` is set,
/// recording what it finds in `instance`.
pub(crate) async fn run(
    instance: Arc<Instance>,
    channels: Channels,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let members: Vec<(u64, String)> = instance
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != instance.id())
            .map(|(id, member)| (*id, member.addr.clone()))
            .collect();
        for (id, addr) in members {
            let started = Instant::now();
            let answer = network::ping(&channels, &addr, every).await;
            let seen = match answer {
                Ok(answered) if answered == id => PeerSeen {
                    reachable: true,
                    checked: Instant::now(),
                    rtt: Some(started.elapsed()),
                    error: None,
                },
                Ok(answered) => PeerSeen {
                    reachable: false,
                    checked: Instant::now(),
                    rtt: None,
                    error: Some(format!("{addr} answers as node {answered}")),
                },
                Err(e) => PeerSeen {
                    reachable: false,
                    checked: Instant::now(),
                    rtt: None,
                    error: Some(e.to_string()),
                },
            };
            instance.set_peer_seen(id, seen);
        }
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
