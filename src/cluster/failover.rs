//! Fast failover: a follower whose leader has gone silent campaigns as
//! soon as the leader's lease has run out.
//!
//! openraft lets a follower with a leader campaign only once the lease
//! (the election timeout's upper bound) *and* a further random election
//! timeout have passed since it last heard from the leader: 450–600 ms on
//! the LAN defaults, 3–4 s on WAN timeouts, before an election even
//! starts. The other voters refuse a vote while their own lease on the old
//! leader holds, so campaigning before the lease ends is pointless, and
//! campaigning right after it is the very election openraft would start a
//! little later: it changes when, never whether, and a vote still needs a
//! majority. A random delay of up to a quarter of the shortest election
//! timeout keeps two followers from splitting the vote.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use openraft::async_runtime::AsyncRuntime;
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

use super::instance::Instance;
use super::runtime::Runtime;

/// How the watchdog is timed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// The leader's lease: the election timeout's upper bound.
    pub lease: Duration,
    /// The most random delay added after the lease.
    pub spread: Duration,
    /// How often the watchdog looks.
    pub tick: Duration,
}

impl Timing {
    /// The timing for `election_timeout_min_ms`, `election_timeout_max_ms`
    /// and `heartbeat_interval_ms`.
    pub(crate) fn new(min_ms: u64, max_ms: u64, heartbeat_ms: u64) -> Timing {
        Timing {
            lease: Duration::from_millis(max_ms),
            spread: Duration::from_millis((min_ms / 4).max(1)),
            tick: Duration::from_millis((heartbeat_ms / 5).clamp(5, 50)),
        }
    }
}

/// Watches `instance` until `shutdown`, and asks it to campaign once its
/// leader has been silent for the lease and a random delay.
pub(crate) async fn watch(
    instance: Arc<Instance>,
    timing: Timing,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut campaigned_after: Option<Instant> = None;
    let mut delay = timing.lease + random_upto(timing.spread);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(timing.tick) => {}
            _ = shutdown.changed() => return,
        }
        let Some(contact) = instance.leader_contact() else {
            continue;
        };
        if !silent_too_long(contact, campaigned_after, delay, Instant::now())
            || !follows_another(&instance)
        {
            continue;
        }
        campaigned_after = Some(contact);
        delay = timing.lease + random_upto(timing.spread);
        let silent_ms = contact.elapsed().as_millis();
        tracing::info!(silent_ms, "the leader's lease ran out; campaigning");
        if let Err(e) = instance.raft().trigger().elect().await {
            tracing::debug!(cause = %e, "could not campaign");
        }
    }
}

/// Whether a leader last heard from at `contact` has been silent for
/// longer than `delay` at `now`, and this node has not campaigned since.
/// One campaign per silence: if it fails, openraft's own timer takes over
/// until a leader is heard from again.
fn silent_too_long(
    contact: Instant,
    campaigned_after: Option<Instant>,
    delay: Duration,
    now: Instant,
) -> bool {
    campaigned_after != Some(contact) && now.saturating_duration_since(contact) >= delay
}

/// Whether this node is a healthy voter following some other node.
fn follows_another(instance: &Instance) -> bool {
    if instance.fault().is_some() {
        return false;
    }
    let raft = instance.raft();
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.running_state.is_ok()
        && m.state == ServerState::Follower
        && m.current_leader
            .is_some_and(|leader| leader != instance.id())
        && m.membership_config
            .membership()
            .voter_ids()
            .any(|id| id == instance.id())
}

fn random_upto(spread: Duration) -> Duration {
    let millis = spread.as_millis().max(1) as u64;
    Duration::from_millis(Runtime::thread_rng().gen_range(0..millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_and_wan_timings() {
        let lan = Timing::new(150, 300, 50);
        assert_eq!(lan.lease, Duration::from_millis(300));
        assert_eq!(lan.spread, Duration::from_millis(37));
        assert_eq!(lan.tick, Duration::from_millis(10));
        let wan = Timing::new(1000, 2000, 250);
        assert_eq!(wan.lease, Duration::from_millis(2000));
        assert_eq!(wan.spread, Duration::from_millis(250));
        assert_eq!(wan.tick, Duration::from_millis(50));
    }

    #[test]
    fn campaigns_once_per_silence_and_only_after_the_delay() {
        let contact = Instant::now();
        let delay = Duration::from_millis(300);
        let at = |ms| contact + Duration::from_millis(ms);
        assert!(
            !silent_too_long(contact, None, delay, at(299)),
            "lease holds"
        );
        assert!(silent_too_long(contact, None, delay, at(300)));
        assert!(
            !silent_too_long(contact, Some(contact), delay, at(5000)),
            "already campaigned in this silence"
        );
        let heard_again = at(400);
        assert!(
            silent_too_long(heard_again, Some(contact), delay, heard_again + delay),
            "a new silence after the leader was heard again"
        );
    }

    #[test]
    fn random_delays_stay_within_the_spread() {
        for _ in 0..100 {
            assert!(random_upto(Duration::from_millis(37)) < Duration::from_millis(37));
        }
    }
}
