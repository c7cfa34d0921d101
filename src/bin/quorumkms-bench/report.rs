//! The tables the bench prints.

use std::time::Duration;

use crate::measure::{Figures, Topology, percentile};

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

/// The loopback table: one row per configuration, with its p99 against
/// single-node mode's on the same chains and link.
pub fn print_figures(figures: &[Figures]) {
    println!(
        "{:<40} {:>9} {:>9} {:>10} {:>12} {:>16}",
        "configuration", "p50 ms", "p99 ms", "signs/s", "vs single", "RSS MiB/node"
    );
    for f in figures {
        let single = figures.iter().find(|s| {
            s.name.starts_with("single node")
                && s.name.split_once(',').map(|x| x.1) == f.name.split_once(',').map(|x| x.1)
        });
        let ratio = single.map_or("-".to_string(), |s| {
            format!(
                "p99 x{:.1}",
                f.p99.as_secs_f64() / s.p99.as_secs_f64().max(1e-9)
            )
        });
        let rss: Vec<String> = f.rss_mib.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "{:<40} {:>9.3} {:>9.3} {:>10.0} {:>12} {:>16}",
            f.name,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.per_second,
            ratio,
            rss.join("/")
        );
    }
    println!("mean time per stage of the signing path, per node (count):");
    for f in figures {
        println!("  {}", f.name);
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
