//! The drill plan: which nodes make up the cluster, how to reach their
//! admin API, the shell commands that stop, start, isolate or rejoin each
//! of them, and where the drill's canary validator listens.
//!
//! The drill signs only its own canary chain, never a real one: every
//! signer node needs a `[[chain]]` for it with a key, and a
//! `[[validator]]` per canary sentry address.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::cluster::TlsConfig;
use crate::privval::Version;

/// The canary chain id when the plan names none.
pub const CANARY_CHAIN: &str = "quorumkms-drill";

/// A whole plan file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The canary validator the drill runs.
    pub canary: CanaryPlan,
    /// How long each phase lasts.
    #[serde(default)]
    pub timing: Timing,
    /// Operator certificate for a TLS cluster.
    pub tls: Option<TlsConfig>,
    /// The signer nodes, at least three.
    #[serde(rename = "node")]
    pub nodes: Vec<NodePlan>,
}

/// The drill's simulated validator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryPlan {
    /// Chain id (each signer needs a key and a `[[validator]]` for it).
    #[serde(default = "canary_chain")]
    pub chain_id: String,
    /// Where the signers dial the canary: one address per sentry,
    /// `tcp://host:port` or `unix://path`. The sentry-loss drill needs two.
    pub sentries: Vec<String>,
    /// Time per height.
    #[serde(default = "default_block_time", deserialize_with = "duration")]
    pub block_time: Duration,
    /// privval protocol version.
    #[serde(default = "default_protocol")]
    pub protocol: Version,
    /// Every N heights, also ask for a conflicting prevote (0 = never).
    #[serde(default = "default_double_sign_every")]
    pub double_sign_every: i64,
    /// A file of `NODE_ID NAME` lines (from `testnet-config`) naming the
    /// signers' SecretConnection ids, so the drill knows which node serves.
    pub signer_names: Option<PathBuf>,
}

/// Phase lengths.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// Signing must work this long before the fault.
    #[serde(deserialize_with = "duration")]
    pub warmup: Duration,
    /// How long a fault is held before it is healed.
    #[serde(deserialize_with = "duration")]
    pub hold: Duration,
    /// The cluster must sign again and be healthy this soon after healing.
    #[serde(deserialize_with = "duration")]
    pub recover_within: Duration,
    /// Signing is watched this long after recovery.
    #[serde(deserialize_with = "duration")]
    pub settle: Duration,
    /// Each hook command must finish this soon.
    #[serde(deserialize_with = "duration")]
    pub hook_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            warmup: Duration::from_secs(5),
            hold: Duration::from_secs(10),
            recover_within: Duration::from_secs(60),
            settle: Duration::from_secs(3),
            hook_timeout: Duration::from_secs(60),
        }
    }
}

/// One signer node and the commands that act on it. Each command runs
/// with `sh -c`, with `QK_NODE` (name), `QK_NODE_ID` and `QK_ADMIN` set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePlan {
    /// Name in reports.
    pub name: String,
    /// Admin (cluster) address, host:port.
    pub admin: String,
    /// Stops the node abruptly (kill -9, `docker kill`, ...).
    pub stop: Option<String>,
    /// Starts it again and returns (the node keeps running).
    pub start: Option<String>,
    /// Cuts it off from the other signer nodes; validators stay reachable.
    pub isolate: Option<String>,
    /// Undoes `isolate`.
    pub rejoin: Option<String>,
    /// Makes its key backend fail (default: the admin API's simulated key
    /// loss).
    pub key_loss: Option<String>,
    /// Undoes `key_loss`.
    pub key_restore: Option<String>,
}

/// Which hook a drill needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// `stop` and `start`.
    StopStart,
    /// `isolate` and `rejoin`.
    IsolateRejoin,
}

impl NodePlan {
    /// The command pair for `hook`, when the plan gives both.
    pub fn pair(&self, hook: Hook) -> Option<(&str, &str)> {
        let (a, b) = match hook {
            Hook::StopStart => (&self.stop, &self.start),
            Hook::IsolateRejoin => (&self.isolate, &self.rejoin),
        };
        Some((a.as_deref()?, b.as_deref()?))
    }
}

fn canary_chain() -> String {
    CANARY_CHAIN.to_string()
}

fn default_block_time() -> Duration {
    Duration::from_millis(500)
}

fn default_protocol() -> Version {
    Version::V0_38
}

fn default_double_sign_every() -> i64 {
    5
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::config::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Plan {
    /// Reads and checks a plan file; relative paths in it are relative to
    /// the file.
    ///
    /// # Errors
    ///
    /// Unreadable, malformed or inconsistent plans, with every problem.
    pub fn load(path: &Path) -> Result<Plan, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let mut plan = Plan::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut plan.tls {
            resolve(&mut tls.ca);
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
            if let Some(crl) = &mut tls.crl {
                resolve(crl);
            }
        }
        if let Some(names) = &mut plan.canary.signer_names {
            resolve(names);
        }
        Ok(plan)
    }

    /// Parses and checks plan text.
    ///
    /// # Errors
    ///
    /// The TOML error, or every inconsistency found.
    pub fn parse(text: &str) -> Result<Plan, String> {
        let plan: Plan = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        let problems = plan.problems();
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems.join("; "))
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.nodes.len() < 3 {
            problems.push(format!(
                "a drill needs a cluster of at least 3 [[node]]s, the plan has {}",
                self.nodes.len()
            ));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if self.nodes[..i].iter().any(|n| n.name == node.name) {
                problems.push(format!("node name {:?} appears twice", node.name));
            }
            if node.admin.rsplit_once(':').is_none() {
                problems.push(format!(
                    "node {}: admin {:?} is not host:port",
                    node.name, node.admin
                ));
            }
            if node.key_loss.is_some() != node.key_restore.is_some() {
                problems.push(format!(
                    "node {}: key_loss and key_restore go together",
                    node.name
                ));
            }
        }
        if self.canary.sentries.is_empty() {
            problems.push("canary.sentries: at least one address".to_string());
        }
        for s in &self.canary.sentries {
            if !s.starts_with("tcp://") && !s.starts_with("unix://") {
                problems.push(format!(
                    "canary.sentries: {s:?} is not tcp://host:port or unix://path"
                ));
            }
        }
        if self.canary.block_time < Duration::from_millis(10) {
            problems.push("canary.block_time: at least 10ms".to_string());
        }
        if self.canary.double_sign_every < 0 {
            problems.push("canary.double_sign_every: 0 (never) or more".to_string());
        }
        problems
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = r#"
[[node]]
name = "a"
admin = "10.0.0.1:26700"
stop = "true"
start = "true"
[[node]]
name = "b"
admin = "10.0.0.2:26700"
[[node]]
name = "c"
admin = "10.0.0.3:26700"
"#;

    #[test]
    fn defaults_fill_a_minimal_plan() {
        let plan = Plan::parse(&format!(
            "[canary]\nsentries = [\"tcp://0.0.0.0:26690\"]\n{NODES}"
        ))
        .expect("plan");
        assert_eq!(plan.canary.chain_id, CANARY_CHAIN);
        assert_eq!(plan.canary.block_time, Duration::from_millis(500));
        assert_eq!(plan.timing.hold, Duration::from_secs(10));
        assert_eq!(plan.nodes[0].pair(Hook::StopStart), Some(("true", "true")));
        assert_eq!(plan.nodes[1].pair(Hook::StopStart), None);
        assert_eq!(plan.node("c"), Some(2));
    }

    #[test]
    fn durations_parse() {
        let plan = Plan::parse(&format!(
            "[canary]\nsentries = [\"unix:///tmp/c.sock\"]\nblock_time = \"200ms\"\n\
             [timing]\nhold = \"2.5s\"\n{NODES}"
        ))
        .expect("plan");
        assert_eq!(plan.canary.block_time, Duration::from_millis(200));
        assert_eq!(plan.timing.hold, Duration::from_millis(2_500));
    }

    #[test]
    fn every_problem_is_reported() {
        let err = Plan::parse(
            "[canary]\nsentries = [\"http://x\"]\n\
             [[node]]\nname = \"a\"\nadmin = \"nowhere\"\nkey_loss = \"x\"\n\
             [[node]]\nname = \"a\"\nadmin = \"h:1\"\n",
        )
        .unwrap_err();
        for expected in [
            "at least 3",
            "appears twice",
            "not host:port",
            "go together",
            "http://x",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused() {
        let base = format!("[canary]\nsentries = [\"tcp://h:1\"]\n{NODES}");
        assert!(Plan::parse(&format!("{base}\n[timing]\nhold = \"soon\"\n")).is_err());
        assert!(Plan::parse(&format!("oops = 1\n{base}")).is_err());
    }
}
