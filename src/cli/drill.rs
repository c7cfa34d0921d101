//! `quorumkms drill NAME`: rehearse a failure against a running cluster
//! (see `crate::drill` and docs/drills.md).

use std::path::PathBuf;

use crate::drill::{self, Drill, plan::Plan};

/// Arguments of `drill`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The drill to run, or `all` for every drill in turn.
    #[arg(value_parser = parse_drills)]
    pub drill: DrillChoice,
    /// The drill plan: nodes, hooks, canary (see docs/drills.md).
    #[arg(long, default_value = "drill.toml")]
    pub plan: PathBuf,
    /// The node to break, for drills that pick one (follower-kill,
    /// partition-follower, hsm-loss).
    #[arg(long)]
    pub target: Option<String>,
    /// Print each report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One drill or all of them.
#[derive(Clone, Debug)]
pub struct DrillChoice(Vec<Drill>);

fn parse_drills(text: &str) -> Result<DrillChoice, String> {
    if text == "all" {
        return Ok(DrillChoice(Drill::ALL.to_vec()));
    }
    <Drill as clap::ValueEnum>::from_str(text, false)
        .map(|d| DrillChoice(vec![d]))
        .map_err(|_| {
            let names: Vec<&str> = Drill::ALL.iter().map(|d| d.name()).collect();
            format!("unknown drill {text:?}; one of: {}, all", names.join(", "))
        })
}

/// Runs `drill`.
///
/// # Errors
///
/// A plan that cannot be used, a drill that cannot start, or a drill
/// that failed (the cluster did not recover, or a conflict appeared).
pub fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let plan = Plan::load(&args.plan)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut failed = Vec::new();
    for &drill in &args.drill.0 {
        println!("== drill {}", drill.name());
        let report = runtime.block_on(drill::run(&plan, drill, args.target.as_deref()))?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{report}");
        }
        if !report.passed() {
            failed.push(drill.name());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("drill failed: {}", failed.join(", ")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_names() {
        assert_eq!(parse_drills("all").map(|d| d.0.len()).ok(), Some(8));
        let one = parse_drills("partition-split").expect("known");
        assert_eq!(one.0, vec![Drill::PartitionSplit]);
        for d in Drill::ALL {
            assert_eq!(parse_drills(d.name()).expect("known").0, vec![d]);
        }
        let err = parse_drills("meteor-strike").unwrap_err();
        assert!(err.contains("leader-kill") && err.contains("all"), "{err}");
    }
}
