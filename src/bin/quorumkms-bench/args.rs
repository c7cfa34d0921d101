//! The command line, and the sites of multi-region mode.

use std::path::PathBuf;

use clap::Parser;

/// The bench's command line.
#[derive(Parser, Debug)]
#[command(about = "Benchmark quorumkms sign latency, throughput, failover and memory")]
pub struct Args {
    /// Measure the key backends' signing latency instead (in process; the
    /// YubiHSM mock needs a debug build with --features mockhsm).
    #[arg(long, conflicts_with = "netns")]
    pub keys: bool,
    /// Heights each chain's validator signs in each loopback
    /// configuration: a proposal, a prevote and a precommit per height.
    #[arg(long, default_value_t = 500)]
    pub heights: usize,
    /// With --netns: sign requests (prevotes) per node and pattern; with
    /// --keys: signatures per backend.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Also run every loopback configuration against this tmkms binary
    /// (built with the softsign feature), with the same key and workload,
    /// and give each figure its ratio to tmkms's.
    #[arg(long, value_name = "PATH")]
    pub tmkms: Option<PathBuf>,
    /// Only these rows, comma-separated: `tmkms`, `single`, `cluster`,
    /// `threshold` (every row of that signer), or one row: `single1`,
    /// `cluster10`, `threshold10`, `tmkms1-sc` (1 or 10 chains; `-sc` over
    /// SecretConnection, else a unix socket); `failover`.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Which node serves the validators in the cluster and threshold rows,
    /// comma-separated for a row each: `any` (whichever node's connection
    /// a validator accepts, as CometBFT does), `leader` or `follower`.
    #[arg(long, value_delimiter = ',', default_value = "any")]
    pub served_by: Vec<crate::measure::ServedBy>,
    /// Instead of the rest, time this many single-node state writes per
    /// write scheme (in --tmp) and print p50/p99 for each.
    #[arg(long, value_name = "WRITES")]
    pub state_write: Option<usize>,
    /// Leader kills for the failover figure (median reported).
    #[arg(long, default_value_t = 10)]
    pub failovers: usize,
    /// Where node directories go (e.g. /dev/shm to take the disk's fsync
    /// out of the figures). Default: the system temporary directory.
    #[arg(long)]
    pub tmp: Option<PathBuf>,
    /// The quorumkms binary to run (default: next to this one).
    #[arg(long)]
    pub exe: Option<PathBuf>,
    /// Measure `--topology`s instead, each node in network namespace
    /// PREFIX-SITE as scripts/regions sets them up (run the bench in the
    /// validators' namespace).
    #[arg(long, value_name = "PREFIX", requires = "topology")]
    pub netns: Option<String>,
    /// With --netns: a topology as its nodes' sites, e.g. `a1,a2,b1,b2,c1`
    /// (region letter and index; the node's address is 10.98.R.K, R = 1
    /// for region a). Repeat for several. Topologies spanning regions use
    /// the WAN timeouts of cluster/examples/regions-5.
    #[arg(long, requires = "netns")]
    pub topology: Vec<String>,
    /// With --netns: the address the validators listen on (10.98.R.x puts
    /// them in region R).
    #[arg(long, default_value = "10.98.1.100")]
    pub validator_ip: String,
    /// With --netns: also measure latency with requests this many
    /// milliseconds apart, as a validator's are (0: back to back only).
    #[arg(long, default_value_t = 100)]
    pub spacing_ms: u64,
}

/// Where a node runs in multi-region mode: namespace `PREFIX-NAME`,
/// address 10.98.R.K, as scripts/regions lays them out.
#[derive(Clone, Debug)]
pub struct Site {
    /// Region letter and index, e.g. `b2`.
    pub name: String,
    /// The region letter.
    pub region: char,
    /// The node's address, 10.98.R.K.
    pub ip: String,
}

impl std::str::FromStr for Site {
    type Err = String;

    fn from_str(name: &str) -> Result<Site, String> {
        let region = name.chars().next().filter(char::is_ascii_lowercase);
        let index = name.get(1..).and_then(|k| k.parse::<u8>().ok());
        match (region, index) {
            (Some(region), Some(k @ 1..=99)) => Ok(Site {
                name: name.to_string(),
                region,
                ip: format!("10.98.{}.{k}", region as u8 - b'a' + 1),
            }),
            _ => Err(format!(
                "site {name:?}: expected a region letter and an index, e.g. b2"
            )),
        }
    }
}

/// The region of an address 10.98.R.x.
pub fn region_of(ip: &str) -> Option<char> {
    let octet: u8 = ip.strip_prefix("10.98.")?.split('.').next()?.parse().ok()?;
    (1..=26)
        .contains(&octet)
        .then(|| (b'a' + octet - 1) as char)
}

/// True when `--only` selects the row `key` (every row without `--only`).
pub fn selected(only: &[String], key: &str) -> bool {
    only.is_empty()
        || only.iter().any(|o| {
            o == key || (!o.chars().any(|c| c.is_ascii_digit()) && key.starts_with(o.as_str()))
        })
}

#[cfg(test)]
mod tests {
    use super::selected;

    #[test]
    fn only_selects_families_and_rows() {
        let only = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
        assert!(selected(&[], "cluster10"));
        assert!(selected(&only("single"), "single1-sc"));
        assert!(selected(&only("single,cluster1"), "cluster1"));
        assert!(!selected(&only("single,cluster1"), "cluster10"));
        assert!(!selected(&only("single,cluster1"), "cluster1-sc"));
        assert!(!selected(&only("tmkms"), "failover"));
        assert!(selected(&only("threshold"), "threshold10"));
        assert!(!selected(&only("threshold"), "cluster1"));
        assert!(!selected(&only("cluster"), "threshold1"));
        assert!(!selected(&only("threshold1"), "threshold10"));
    }
}
