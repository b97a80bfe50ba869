//! `troupe chaos run SCENARIO.yaml [--seed N] [--out DIR]`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ChaosCommand {
    /// Run a scenario: start its cluster (each node in its own network
    /// namespace when run as root), deploy its serve config, drive its
    /// load, inject its faults, then check and report. Exits 1 when an SLO
    /// or a safety check fails. See CHAOS.md.
    Run(RunArgs),
    /// Check a scenario and print its fault timeline for a seed, without
    /// running anything (the same seed always gives the same timeline).
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The scenario file.
    scenario: PathBuf,
    /// The seed (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (see chaos/scenarios/).
    scenario: PathBuf,
    /// The seed of the fault schedule (default: the scenario's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Where report.json, report.html and the nodes' logs go (default:
    /// chaos-out/<scenario>-seed<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(command: ChaosCommand) -> anyhow::Result<()> {
    let args = match command {
        ChaosCommand::Run(args) => args,
        ChaosCommand::Plan(args) => return plan(args),
    };
    let options = troupe_chaos::RunOptions {
        scenario: args.scenario,
        seed: args.seed,
        out: args.out,
    };
    let (report, out) = troupe_chaos::run(options, async {
        let _ = super::wait_for_shutdown_signal().await;
    })
    .await?;
    print!("{}", troupe_chaos::report::summary_table(&report));
    println!(
        "report: {} and {}",
        out.join("report.html").display(),
        out.join("report.json").display()
    );
    if !report.passed() {
        anyhow::bail!("the run failed its checks (see FAIL lines above)");
    }
    Ok(())
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let (scenario, _) = troupe_chaos::scenario::load(&args.scenario).map_err(|e| {
        anyhow::anyhow!("{} is not a valid scenario:\n{e}", args.scenario.display())
    })?;
    let seed = args.seed.unwrap_or(scenario.seed);
    println!(
        "scenario {}: {} s of load, seed {seed}",
        scenario.name, scenario.duration_s
    );
    for fault in troupe_chaos::scenario::timeline(&scenario, seed) {
        let heal = fault
            .spec
            .heal_after_s
            .map_or("never healed".to_owned(), |s| format!("healed after {s} s"));
        println!(
            "{:>9.3} s  {:<32} target {:?} x{} (pick {}), {heal}",
            fault.at_ms as f64 / 1000.0,
            fault.spec.class,
            fault.spec.target.role,
            fault.offsets_ms.len().max(1),
            fault.pick
        );
    }
    Ok(())
}
