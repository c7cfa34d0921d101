//! Seeded fault schedules: which fault hits which host, when and for how
//! long. Faults come one at a time (a majority stays up), start after the
//! cluster has formed, and stop at the end of the fault window; every
//! fault is healed before the next one starts. Besides the network, crash
//! and disk faults there are hostile peers, which attack one node and
//! leave (their effects are checked on every write), and stale-store
//! restores, which crash a node and put the backup of its disk taken at
//! the previous heal in place.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Cut the leader off from every other host. Modelled as holding every
    /// segment until the partition heals, which is what TCP makes of a
    /// partition shorter than its retransmission timeout (turmoil's own
    /// partition drops segments for good, and a simulated stream that lost
    /// one never delivers again, which real TCP would not do).
    PartitionLeader,
    /// Cut a follower off from every other host (modelled as above).
    PartitionFollower,
    /// Crash the leader, restart it when the fault ends.
    CrashLeader,
    /// Crash any node, restart it when the fault ends.
    CrashNode,
    /// Hold the messages on one link between a node and one other host
    /// (peer or validator), release them all at the end.
    Hold,
    /// Raise the latency of a node's links to up to a second.
    LatencySpike,
    /// Fill a node's disk: every write fails until the fault ends. The
    /// node must stop signing and come back once it has room.
    DiskFull,
    /// A hostile peer sends the node a forged snapshot in a high term
    /// (`hostile::Attack::Snapshot`).
    HostileSnapshot,
    /// A hostile peer raises a chain to `i64::MAX` through the node
    /// (`hostile::Attack::Raise`).
    HostileRaise,
    /// A hostile peer sends the node Raft messages with another cluster's
    /// id (`hostile::Attack::WrongCluster`).
    HostileWrongCluster,
    /// Stop a node and restart it, when the fault ends, on the backup of
    /// its disk taken when the fault before healed, as an operator
    /// restoring a backup would. Only a node that is not a voter (the
    /// spare while a learner) unless `Settings::stale_voters`: a voter
    /// that lost entries it acknowledged can elect a leader that lacks
    /// committed ones (see `sim` module docs).
    StaleRejoin,
}

impl Kind {
    /// Every kind, for reports.
    pub const ALL: [Kind; 11] = [
        Kind::PartitionLeader,
        Kind::PartitionFollower,
        Kind::CrashLeader,
        Kind::CrashNode,
        Kind::Hold,
        Kind::LatencySpike,
        Kind::DiskFull,
        Kind::HostileSnapshot,
        Kind::HostileRaise,
        Kind::HostileWrongCluster,
        Kind::StaleRejoin,
    ];

    /// Short name for traces and reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PartitionLeader => "partition-leader",
            Kind::PartitionFollower => "partition-follower",
            Kind::CrashLeader => "crash-leader",
            Kind::CrashNode => "crash-node",
            Kind::Hold => "hold",
            Kind::LatencySpike => "latency-spike",
            Kind::DiskFull => "disk-full",
            Kind::HostileSnapshot => "hostile-snapshot",
            Kind::HostileRaise => "hostile-raise",
            Kind::HostileWrongCluster => "hostile-wrong-cluster",
            Kind::StaleRejoin => "stale-rejoin",
        }
    }
}

/// The fault plan of one run, drawn from its own seeded RNG.
pub struct FaultPlan {
    rng: StdRng,
    /// No fault starts after this.
    pub window_end: Duration,
    /// When the next fault starts.
    pub next_at: Duration,
}

/// A fault in progress.
#[derive(Clone, Debug)]
pub struct Active {
    /// What it is.
    pub kind: Kind,
    /// The node (1-based) it hits.
    pub node: u64,
    /// When it ends.
    pub until: Duration,
    /// For latency spikes: the new maximum latency.
    pub latency: Duration,
    /// For a held link: picks the other end among the other hosts; for a
    /// hostile peer: picks which one.
    pub other: usize,
}

impl FaultPlan {
    /// The plan for `seed`: faults between `start` and `window_end`.
    pub fn new(seed: u64, start: Duration, window_end: Duration) -> FaultPlan {
        FaultPlan {
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17_0000_0001),
            window_end,
            next_at: start,
        }
    }

    /// Draws the next fault, starting at `now`, given the current leader.
    pub fn draw(&mut self, now: Duration, nodes: u64, leader: Option<u64>) -> Active {
        let roll = self.rng.gen_range(0..100u32);
        let mut kind = match roll {
            0..20 => Kind::PartitionLeader,
            20..32 => Kind::PartitionFollower,
            32..48 => Kind::CrashLeader,
            48..60 => Kind::CrashNode,
            60..71 => Kind::Hold,
            71..79 => Kind::LatencySpike,
            79..87 => Kind::DiskFull,
            87..90 => Kind::HostileSnapshot,
            90..93 => Kind::HostileRaise,
            93..95 => Kind::HostileWrongCluster,
            _ => Kind::StaleRejoin,
        };
        let any = self.rng.gen_range(1..=nodes);
        let node = match (kind, leader) {
            (Kind::PartitionLeader | Kind::CrashLeader, Some(leader)) => leader,
            (Kind::PartitionFollower, Some(leader)) => {
                let pick = self.rng.gen_range(1..nodes);
                if pick >= leader { pick + 1 } else { pick }
            }
            (Kind::PartitionLeader, None) => {
                kind = Kind::PartitionFollower;
                any
            }
            (Kind::CrashLeader, None) => {
                kind = Kind::CrashNode;
                any
            }
            _ => any,
        };
        let length = Duration::from_millis(self.rng.gen_range(500..4_000));
        let latency = Duration::from_millis(self.rng.gen_range(200..1_000));
        let other = self.rng.gen_range(0..usize::MAX);
        Active {
            kind,
            node,
            until: now + length,
            latency,
            other,
        }
    }

    /// Schedules the next fault after one healed at `now`.
    pub fn rest(&mut self, now: Duration) {
        self.next_at = now + Duration::from_millis(self.rng.gen_range(300..2_500));
    }
}
