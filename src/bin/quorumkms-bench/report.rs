//! The tables the bench prints.

use std::time::Duration;

use crate::measure::{Figures, Signer, Topology, percentile};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Milliseconds with `decimals`, or "-" for a figure not measured (zero).
fn ms_or_dash(d: Duration, decimals: usize) -> String {
    if d.is_zero() {
        "-".to_string()
    } else {
        format!("{:.decimals$}", ms(d))
    }
}

/// The multi-region table: one row per node a topology signed through,
/// then each failover run.
pub fn print_topologies(topologies: &[Topology], spacing: Duration) {
    println!(
        "{:<18} {:<8} {:<18} {:>17} {:>17}",
        "",
        "",
        "",
        "back to back",
        format!("{} ms apart", spacing.as_millis())
    );
    println!(
        "{:<18} {:<8} {:<18} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
        "topology",
        "timeouts",
        "signed via",
        "p50 ms",
        "p99 ms",
        "p50 ms",
        "p99 ms",
        "failover ms",
        "verified"
    );
    for t in topologies {
        let mut gaps: Vec<Duration> = t.failovers.iter().map(|f| f.1).collect();
        gaps.sort();
        for (i, (node, role, [p50, p99, spaced50, spaced99])) in t.latency.iter().enumerate() {
            let (failover, verified) = if i == 0 {
                (
                    ms_or_dash(percentile(&gaps, 0.5), 0),
                    t.signatures.to_string(),
                )
            } else {
                (String::new(), String::new())
            };
            let row = format!(
                "{:<18} {:<8} {:<18} {:>8} {:>8} {:>8} {:>8} {:>12} {:>9}",
                t.sites,
                t.timeouts,
                format!("{node} ({role})"),
                ms_or_dash(*p50, 1),
                ms_or_dash(*p99, 1),
                ms_or_dash(*spaced50, 1),
                ms_or_dash(*spaced99, 1),
                failover,
                verified
            );
            println!("{}", row.trim_end());
        }
    }
    println!(
        "failover: median over the runs; each run (node killed: ms from kill -9 to the next signature):"
    );
    for t in topologies {
        let runs: Vec<String> = t
            .failovers
            .iter()
            .map(|(node, gap)| format!("{node}:{:.0}", ms(*gap)))
            .collect();
        println!("  {:<18} {}", t.sites, runs.join(" "));
    }
    println!(
        "0 conflicting and 0 invalid signatures in every topology (the bench fails otherwise)"
    );
}

/// A figure over the same figure of `base` (`-` when there is none).
fn ratio(figure: f64, base: Option<f64>) -> String {
    match base {
        Some(base) if base > 0.0 => format!("x{:.2}", figure / base),
        _ => "-".to_string(),
    }
}

/// The loopback table: one row per configuration, each figure followed by
/// its ratio to single-node mode's (and the plain cluster's, when a
/// threshold row is there; and tmkms's, when measured) on the same chains
/// and link, from the same run. RSS is per node; its ratios compare the
/// largest node.
pub fn print_figures(figures: &[Figures]) {
    let measured = |signer| figures.iter().any(|f| f.config.signer == signer);
    let mut bases: Vec<(&str, Signer)> = vec![("/1n", Signer::Single)];
    if measured(Signer::Threshold) {
        bases.push(("/cl", Signer::Cluster));
    }
    if measured(Signer::Tmkms) {
        bases.push(("/tm", Signer::Tmkms));
    }
    let width = figures
        .iter()
        .map(|f| f.config.name().len())
        .fold(40, usize::max);
    let mut header = format!("{:<width$}", "configuration");
    for figure in ["p50 ms", "p99 ms", "signs/s", "RSS MiB"] {
        header.push_str(&format!(" {figure:>9}"));
        for (name, _) in &bases {
            header.push_str(&format!(" {name:>7}"));
        }
    }
    header.push_str(&format!(" {:>10} {:>9}", "RSS/node", "verified"));
    println!("{header}");
    let values = |f: &Figures| {
        [
            ms(f.p50),
            ms(f.p99),
            f.per_second,
            f.rss_mib.iter().copied().fold(0.0, f64::max),
        ]
    };
    for f in figures {
        let base_values: Vec<Option<[f64; 4]>> = bases
            .iter()
            .map(|(_, signer)| {
                figures
                    .iter()
                    .find(|b| {
                        b.config.signer == *signer
                            && b.config.chains == f.config.chains
                            && b.config.link == f.config.link
                    })
                    .map(values)
            })
            .collect();
        let mut row = format!("{:<width$}", f.config.name());
        for (i, value) in values(f).into_iter().enumerate() {
            let decimals = if i < 2 { 3 } else { 0 };
            row.push_str(&format!(" {value:>9.decimals$}"));
            for base in &base_values {
                row.push_str(&format!(" {:>7}", ratio(value, base.map(|b| b[i]))));
            }
        }
        let rss: Vec<String> = f.rss_mib.iter().map(|r| format!("{r:.0}")).collect();
        row.push_str(&format!(" {:>10} {:>9}", rss.join("/"), f.verified));
        println!("{row}");
    }
    println!(
        "/1n: over single-node mode's figure, /cl: over the 3-node cluster's, /tm: over \
         tmkms's (same chains and link); 0 conflicting and 0 invalid signatures in every row \
         (the bench fails otherwise)"
    );
    println!("mean time per stage of the signing path, per node (count):");
    for f in figures.iter().filter(|f| !f.stages.is_empty()) {
        if f.config.signer == Signer::Threshold {
            println!(
                "  {} (sign: round 1, commitments; round 2, shares; aggregating and checking)",
                f.config.name()
            );
        } else {
            println!("  {}", f.config.name());
        }
        print!("{}", crate::stages::render(&f.stages));
    }
}

/// The loopback failover line, from the sorted gaps of each run.
pub fn print_failover(gaps: &[Duration]) {
    let ms: Vec<String> = gaps
        .iter()
        .map(|g| format!("{:.0}", g.as_secs_f64() * 1e3))
        .collect();
    println!(
        "failover after kill -9 of the leader ({} runs, 3 nodes, LAN timeouts): median {:.0} ms, max {:.0} ms  [{}]",
        gaps.len(),
        percentile(gaps, 0.5).as_secs_f64() * 1e3,
        gaps.last().map_or(0.0, |g| g.as_secs_f64() * 1e3),
        ms.join(" ")
    );
}
