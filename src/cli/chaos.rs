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
    let ChaosCommand::Run(args) = command;
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
