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
    /// Sign requests per chain in each configuration (with --keys:
    /// signatures per backend).
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
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
