//! `quorumkms validator-sim`: a long-running simulated validator node for
//! deployments and drills. It listens for signers as a CometBFT validator
//! does, produces heights as the demo does ([`produce_height`]),
//! verifies every signature in a [`Checker`], prints one line per height
//! and periodic stats, and exits non-zero when a conflicting or invalid
//! signature was seen (at the end, or on SIGTERM/SIGINT after a summary).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::config::parse_duration;
use crate::privval::Version;
use crate::testnet::read_signer_names;
use crate::validator::{
    Checker, DOUBLE_SIGN_STEP, MockValidator, SignOutcome, SignerListener, ValidatorTiming,
    consensus, produce_height,
};

/// Arguments of `validator-sim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where signers dial: `tcp://host:port` (SecretConnection with a fresh
    /// node key) or `unix://path`.
    #[arg(long, default_value = "tcp://0.0.0.0:26658")]
    pub listen: String,
    /// Chain id.
    #[arg(long, default_value = crate::testnet::CHAIN_ID)]
    pub chain: String,
    /// Expected consensus public key (hex, 32 bytes); default: the key the
    /// first PubKey reply announces.
    #[arg(long)]
    pub pubkey: Option<String>,
    /// privval protocol version.
    #[arg(long, default_value = "v0.38")]
    pub protocol: Version,
    /// Time per height.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub block_time: Duration,
    /// Heights to produce (0 = until stopped).
    #[arg(long, default_value_t = 0)]
    pub blocks: u64,
    /// Print stats this often.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub stats_every: Duration,
    /// First height; 0 derives heights from the wall clock (unix time /
    /// block time), so that several validator nodes of one chain ask for
    /// the same heights at the same time.
    #[arg(long, default_value_t = 0)]
    pub start_height: i64,
    /// Every N heights, also ask for a conflicting prevote, which the
    /// signer must refuse (0 = never).
    #[arg(long, default_value_t = 0)]
    pub double_sign_every: i64,
    /// A file of `NODE_ID NAME` lines naming the signers in the output.
    #[arg(long)]
    pub signer_names: Option<PathBuf>,
}

/// Counts over a run.
#[derive(Debug, Default)]
struct Stats {
    heights: u64,
    signed: u64,
    refused: u64,
    failed: u64,
    double_signs_refused: u64,
    longest_gap: Duration,
    last_signed: Option<Instant>,
}

impl Stats {
    fn gap_now(&self) -> Duration {
        let current = self.last_signed.map_or(Duration::ZERO, |t| t.elapsed());
        self.longest_gap.max(current)
    }

    fn line(&self, checker: &Checker, accepted: u32) -> String {
        let report = checker.report();
        format!(
            "heights {}, signed {}, refused {} (double-sign attempts {}), failed {}, \
             conflicts {}, invalid {}, longest gap without a signature {:.1}s, \
             signer connections {accepted}",
            self.heights,
            self.signed,
            self.refused,
            self.double_signs_refused,
            self.failed,
            report.conflicts,
            report.invalid,
            self.gap_now().as_secs_f64()
        )
    }
}

/// Runs `validator-sim`.
///
/// # Errors
///
/// Bad arguments, a listen address that cannot be bound, or a conflicting
/// or invalid signature seen during the run.
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.block_time < Duration::from_millis(1) {
        return Err("--block-time must be at least 1ms".into());
    }
    let expected = args.pubkey.as_deref().map(parse_pubkey).transpose()?;
    let names = match &args.signer_names {
        Some(path) => read_signer_names(&std::fs::read_to_string(path)?),
        None => BTreeMap::new(),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run_async(args, expected, &names))
}

fn parse_pubkey(hex_key: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| format!("--pubkey: {e}"))?;
    bytes
        .try_into()
        .map_err(|_| "--pubkey must be 32 bytes (64 hex characters)".to_string())
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The next height to produce after `last`, waiting for the wall clock
/// when heights follow it.
async fn next_height(args: &Args, last: i64) -> i64 {
    if args.start_height > 0 {
        if last >= args.start_height {
            tokio::time::sleep(args.block_time).await;
            return last + 1;
        }
        return args.start_height;
    }
    let block_ms = args.block_time.as_millis().max(1);
    let now = unix_millis();
    let clock = i64::try_from(now / block_ms).unwrap_or(i64::MAX);
    if clock > last {
        return clock;
    }
    let next = last + 1;
    let due = u128::try_from(next).unwrap_or(u128::MAX) * block_ms;
    let wait = u64::try_from(due.saturating_sub(now)).unwrap_or(u64::MAX);
    tokio::time::sleep(Duration::from_millis(wait)).await;
    next
}

fn short(via: &str) -> String {
    via.chars().take(12).collect()
}

async fn drive(
    args: &Args,
    validator: &mut MockValidator,
    expected: Option<[u8; 32]>,
    names: &BTreeMap<String, String>,
    checker: &Checker,
    stats: &mut Stats,
) {
    // Wait for a signer and learn (or check) the consensus key.
    let mut waited = Instant::now();
    let public_key = loop {
        match validator.pub_key().await {
            Ok(key) => break key,
            Err(e) => {
                if waited.elapsed() >= args.stats_every {
                    println!("waiting for a signer: {e}");
                    waited = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let public_key = match expected.map(crate::keys::PublicKey::from) {
        Some(key) if key != public_key => {
            println!(
                "WARNING: signer announced key {public_key} but --pubkey is {key}; verifying against --pubkey"
            );
            key
        }
        Some(key) => key,
        None => public_key,
    };
    validator.set_public_key(public_key);
    println!("consensus key {public_key}");
    let address = consensus::address(&public_key);
    stats.last_signed = Some(Instant::now());
    let mut next_stats = Instant::now() + args.stats_every;
    let mut height = 0;
    while args.blocks == 0 || stats.heights < args.blocks {
        height = next_height(args, height).await;
        let double_sign = args.double_sign_every > 0 && height % args.double_sign_every == 0;
        let t0 = Instant::now();
        let results = produce_height(validator, args.protocol, &address, height, double_sign).await;
        stats.heights += 1;
        let mut line = format!("height {height}");
        let mut via = None;
        for (step, outcome) in &results {
            let (what, by) = outcome.describe(names);
            match outcome {
                SignOutcome::Signed { .. } => {
                    stats.signed += 1;
                    if let Some(last) = stats.last_signed {
                        stats.longest_gap = stats.longest_gap.max(last.elapsed());
                    }
                    stats.last_signed = Some(Instant::now());
                }
                SignOutcome::Refused(_) if *step == DOUBLE_SIGN_STEP => {
                    stats.double_signs_refused += 1;
                }
                SignOutcome::Refused(_) => stats.refused += 1,
                SignOutcome::Failed(_) => stats.failed += 1,
            }
            line.push_str(&format!("  {step} {what}"));
            via = via.or(by);
        }
        println!(
            "{line}  via {}  [{:.1} ms]",
            via.map_or_else(|| "-".to_string(), |v| short(&v)),
            t0.elapsed().as_secs_f64() * 1e3
        );
        if Instant::now() >= next_stats {
            println!("stats: {}", stats.line(checker, validator.accepted));
            next_stats = Instant::now() + args.stats_every;
        }
        validator.keep_alive().await;
    }
}

async fn run_async(
    args: &Args,
    expected: Option<[u8; 32]>,
    names: &BTreeMap<String, String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listen = SignerListener::bind(&args.listen).await?;
    let checker = Checker::new();
    let timing = ValidatorTiming {
        accept_timeout: Duration::from_secs(1),
        ..ValidatorTiming::default()
    };
    let mut validator = MockValidator::new(
        listen,
        &args.chain,
        args.protocol,
        expected.unwrap_or_default(),
        timing,
        checker.clone(),
    );
    println!(
        "quorumkms validator-sim: chain {}, privval {}, signers dial {}",
        args.chain,
        args.protocol,
        validator.signer_addr()
    );
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut stats = Stats::default();
    let stopped = tokio::select! {
        () = drive(args, &mut validator, expected, names, &checker, &mut stats) => None,
        _ = term.recv() => Some("SIGTERM"),
        _ = interrupt.recv() => Some("SIGINT"),
    };
    if let Some(signal) = stopped {
        println!("stopping on {signal}");
    }
    println!("summary: {}", stats.line(&checker, validator.accepted));
    let report = checker.report();
    if report.conflicts > 0 || report.invalid > 0 {
        for (chain, position) in checker.conflicting_positions() {
            println!("CONFLICT: {chain} {position}");
        }
        return Err(format!(
            "{} conflicting and {} invalid signatures were released",
            report.conflicts, report.invalid
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_file() {
        let names = read_signer_names("# signers\nABCD node-1\n\nef01  node-2\nbad\n");
        assert_eq!(names.get("abcd").map(String::as_str), Some("node-1"));
        assert_eq!(names.get("ef01").map(String::as_str), Some("node-2"));
        assert_eq!(names.len(), 2);
    }

    #[test]
    fn pubkey_hex() {
        assert!(parse_pubkey(&"00".repeat(32)).is_ok());
        assert!(parse_pubkey("abcd").is_err());
        assert!(parse_pubkey("zz").is_err());
    }
}
