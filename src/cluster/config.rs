//! A node's `[cluster]` settings and their checks.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::tls::TlsConfig;

/// A node's cluster settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's Raft id; must appear in `peers`.
    pub node_id: u64,
    /// host:port the cluster gRPC service listens on.
    pub listen: String,
    /// Every member of the cluster, this node included.
    pub peers: Vec<Peer>,
    /// Directory for the node's Raft store (`raft.redb`).
    pub data_dir: PathBuf,
    /// Lower bound of the randomized election timeout, in milliseconds.
    #[serde(default = "default_election_timeout_min_ms")]
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, in milliseconds.
    #[serde(default = "default_election_timeout_max_ms")]
    pub election_timeout_max_ms: u64,
    /// How often the leader sends heartbeats, in milliseconds.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// How long a grant may wait for a leader and a commit before it fails
    /// as unavailable, in milliseconds. It must stay well under CometBFT's
    /// 5 s signer timeout, so the validator can fail over in time.
    #[serde(default = "default_grant_timeout_ms")]
    pub grant_timeout_ms: u64,
    /// Mutual TLS on the cluster port. Required unless the listen address
    /// and every peer are loopback (one host: tests, the demo), or
    /// `insecure_plaintext` is set.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Serve and dial the cluster port in plaintext on a non-loopback
    /// address: anyone who reaches it can rewrite the watermark. Only for a
    /// closed test network; the node logs a warning at every start.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_plaintext: bool,
}

/// One cluster member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The member's Raft id.
    pub id: u64,
    /// host:port of the member's cluster gRPC service.
    pub addr: String,
}

/// LAN default: 150 ms.
pub fn default_election_timeout_min_ms() -> u64 {
    150
}

/// LAN default: 300 ms.
pub fn default_election_timeout_max_ms() -> u64 {
    300
}

/// LAN default: 50 ms.
pub fn default_heartbeat_interval_ms() -> u64 {
    50
}

/// 2 s: room for an election and a commit, well under 5 s.
pub fn default_grant_timeout_ms() -> u64 {
    2000
}

/// The longest grant timeout accepted: CometBFT drops a signer connection
/// after 5 s without an answer, so a grant must fail before that.
pub const MAX_GRANT_TIMEOUT_MS: u64 = 4000;

impl Config {
    /// Checks the settings and reports every problem at once.
    ///
    /// # Errors
    ///
    /// One message per problem.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.peers.is_empty() {
            problems.push("peers: list every cluster member, this node included".to_string());
        } else if self.peers.len() == 2 {
            // Two voters tolerate no failure at all, yet halve availability.
            problems
                .push("peers: a 2-node cluster has no fault tolerance; use 1, 3 or more".into());
        }
        if !self.peers.iter().any(|p| p.id == self.node_id) {
            problems.push(format!(
                "peers: this node's id {} is not listed",
                self.node_id
            ));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for peer in &self.peers {
            if !ids.insert(peer.id) {
                problems.push(format!("peers: id {} is listed twice", peer.id));
            }
            if !addrs.insert(peer.addr.as_str()) {
                problems.push(format!("peers: address {} is listed twice", peer.addr));
            }
            if !is_host_port(&peer.addr) {
                problems.push(format!("peers: address {:?} is not host:port", peer.addr));
            }
        }
        if !is_host_port(&self.listen) {
            problems.push(format!("listen: {:?} is not host:port", self.listen));
        }
        if self.heartbeat_interval_ms == 0 {
            problems.push("heartbeat_interval_ms: must be above 0".into());
        }
        if self.heartbeat_interval_ms >= self.election_timeout_min_ms {
            problems.push(format!(
                "heartbeat_interval_ms ({}) must be below election_timeout_min_ms ({})",
                self.heartbeat_interval_ms, self.election_timeout_min_ms
            ));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            problems.push(format!(
                "election_timeout_min_ms ({}) must be below election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            ));
        }
        if self.grant_timeout_ms <= self.election_timeout_max_ms {
            problems.push(format!(
                "grant_timeout_ms ({}) must exceed election_timeout_max_ms ({}) so a grant can outlast an election",
                self.grant_timeout_ms, self.election_timeout_max_ms
            ));
        }
        if self.grant_timeout_ms > MAX_GRANT_TIMEOUT_MS {
            problems.push(format!(
                "grant_timeout_ms ({}) must be at most {MAX_GRANT_TIMEOUT_MS}, under CometBFT's 5 s signer timeout",
                self.grant_timeout_ms
            ));
        }
        self.check_plaintext(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Without `tls`, the cluster port authenticates nobody: allowed only
    /// where every address is loopback (nothing but this host can reach
    /// it), or when the config asks for it by name.
    fn check_plaintext(&self, problems: &mut Vec<String>) {
        match (&self.tls, self.insecure_plaintext) {
            (Some(_), true) => problems.push(
                "insecure_plaintext = true contradicts tls: remove insecure_plaintext".into(),
            ),
            (None, false) => {
                let remote: Vec<&str> = std::iter::once(self.listen.as_str())
                    .chain(self.peers.iter().map(|p| p.addr.as_str()))
                    .filter(|addr| is_host_port(addr) && !is_loopback(addr))
                    .collect();
                if !remote.is_empty() {
                    problems.push(format!(
                        "tls: required, since {} {} not loopback and the cluster port would \
                         accept anyone; create certificates (quorumkms cluster certs init, \
                         then cluster certs node --id {}) and set tls = {{ ca = \"...\", \
                         cert = \"...\", key = \"...\" }}, or set insecure_plaintext = true \
                         on a closed test network",
                        remote.join(", "),
                        if remote.len() == 1 { "is" } else { "are" },
                        self.node_id
                    ));
                }
            }
            _ => {}
        }
    }

    /// The address configured for `id`.
    pub fn peer_addr(&self, id: u64) -> Option<&str> {
        self.peers
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.addr.as_str())
    }
}

/// Whether host:port `addr` names this host only: `localhost`, 127.0.0.0/8
/// or `::1`. Any other name could resolve anywhere.
pub(crate) fn is_loopback(addr: &str) -> bool {
    let Some((host, _)) = addr.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}
