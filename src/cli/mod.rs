//! The `troupe` command line. Binaries stay thin: parse arguments, set up
//! tracing, call into the library.

mod bench;
mod chaos;
mod gcs;
mod node;
mod serve;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use troupe_core::config::ProcessEnv;
use troupe_core::rpc::diag::{ByteBuf, Echo};
use troupe_core::rpc::{CallOptions, ClusterToken, RpcClient, RpcConfig};
use troupe_core::telemetry::{self, LogConfig};
use troupe_serve::Catalog;

/// Troupe: serve models and run actors on a cluster.
#[derive(Debug, Parser)]
#[command(name = "troupe", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that a Troupe node answers at ADDR and shares the cluster token.
    Ping {
        /// The node's RPC address, host:port.
        addr: String,
        /// The cluster token (or set TROUPE_CLUSTER_TOKEN).
        #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
        token: String,
        /// How many round trips to time.
        #[arg(long, default_value_t = 5)]
        count: u32,
        /// Give up on each round trip after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Run a node in the foreground: start a cluster (--head) or join one
    /// (--join ADDR), until SIGTERM, Ctrl-C or `troupe stop`.
    Start(node::StartArgs),
    /// Show the cluster's nodes (resources used/total) and actors.
    Status(node::AddressArgs),
    /// Ask the node at --address to leave the cluster and exit (its actors
    /// are restarted elsewhere).
    Stop(node::AddressArgs),
    /// Serve applications: `troupe serve run APP` runs one on a single node
    /// embedded in this process.
    #[command(subcommand)]
    Serve(serve::ServeCommand),
    /// Print version information (binary and RPC protocol).
    Version,
    /// The global control store: run a member, list or change members.
    #[command(subcommand)]
    Gcs(gcs::GcsCommand),
    /// The chaos harness: run a scenario (a real cluster of node processes,
    /// open-loop load, seeded faults) and report availability and safety.
    #[command(subcommand)]
    Chaos(chaos::ChaosCommand),
    /// Measure the control plane: start N node processes on this machine,
    /// time spawns and a deploy, read memory and idle CPU, stop them all.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Parses the process's arguments and runs the command. `catalog` holds
/// the actor and deployment types this binary can host and its serve
/// applications (a plain actor `Registry` converts into one); every node of
/// a cluster runs the same binary.
pub fn run(catalog: impl Into<Catalog>) -> ExitCode {
    let catalog = with_chaos_actor(catalog.into());
    let cli = Cli::parse();
    if let Err(e) = LogConfig::from_env(&ProcessEnv)
        .map_err(anyhow::Error::from)
        .map(|c| with_config_logging(c, &cli))
        .and_then(|c| telemetry::init(&c).map_err(anyhow::Error::from))
    {
        eprintln!("troupe: cannot set up logging: {e}");
        return ExitCode::from(2);
    }
    match execute(cli, catalog) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("troupe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every node hosts the chaos harness's `troupe.chaos.Tally` (a counter
/// its actor workload calls), as every node serves the transport's
/// diagnostic services.
fn with_chaos_actor(catalog: Catalog) -> Catalog {
    use troupe_chaos::workload::actor::{actor_type, Tally};
    use troupe_worker::Actor;
    if catalog.registry().contains(Tally::TYPE_NAME) {
        return catalog;
    }
    catalog.actors(|registry| registry.register(actor_type()))
}

/// `serve run CONFIG` logs as the config's `logging_config` says, unless
/// RUST_LOG or TROUPE_LOG_FORMAT say otherwise.
fn with_config_logging(mut log: LogConfig, cli: &Cli) -> LogConfig {
    let Command::Serve(serve::ServeCommand::Run(args)) = &cli.command else {
        return log;
    };
    // A bad config is reported once logging is up.
    let Some(Ok(config)) = args.config_path().map(|p| serve::read_config(&p)) else {
        return log;
    };
    let logging = &config.logging_config;
    if std::env::var_os(telemetry::ENV_LOG_FILTER).is_none() {
        log.filter = logging.log_level.to_lowercase();
    }
    if std::env::var_os(telemetry::ENV_LOG_FORMAT).is_none() && logging.encoding == "JSON" {
        log.format = telemetry::LogFormat::Json;
    }
    log
}

fn execute(cli: Cli, catalog: Catalog) -> anyhow::Result<()> {
    match cli.command {
        Command::Start(args) => multi_thread()?.block_on(node::start(args, catalog)),
        Command::Serve(command) => multi_thread()?.block_on(serve::run(command, catalog)),
        Command::Status(args) => multi_thread()?.block_on(node::status(args)),
        Command::Stop(args) => multi_thread()?.block_on(node::stop(args)),
        Command::Gcs(command) => gcs::run(command),
        Command::Chaos(command) => multi_thread()?.block_on(chaos::run(command)),
        Command::Bench(command) => multi_thread()?.block_on(bench::run(command, catalog)),
        Command::Version => {
            println!(
                "troupe {} (RPC protocol {})",
                env!("CARGO_PKG_VERSION"),
                troupe_core::rpc::PROTOCOL_VERSION
            );
            Ok(())
        }
        Command::Ping {
            addr,
            token,
            count,
            timeout,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                anyhow::bail!("--timeout must be a positive number of seconds, got {timeout}");
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(ping(
                &addr,
                rpc_config(&token)?,
                count,
                Duration::from_secs_f64(timeout),
            ))
        }
    }
}

/// What tells a CLI command which other cluster tokens to accept while the
/// token is rotated (comma-separated; OPERATIONS.md).
pub(crate) const ACCEPT_TOKEN_ENV: &str = "TROUPE_ACCEPT_TOKEN";

/// The RPC settings of a command holding the cluster token `token`, also
/// accepting the tokens in [`ACCEPT_TOKEN_ENV`].
pub(crate) fn rpc_config(token: &str) -> anyhow::Result<RpcConfig> {
    let mut config = RpcConfig::new(ClusterToken::new(token)?);
    if let Ok(list) = std::env::var(ACCEPT_TOKEN_ENV) {
        config.also_accept = list
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| ClusterToken::new(t.trim()))
            .collect::<Result<_, _>>()
            .context(ACCEPT_TOKEN_ENV)?;
    }
    Ok(config)
}

async fn ping(addr: &str, rpc: RpcConfig, count: u32, timeout: Duration) -> anyhow::Result<()> {
    let client = RpcClient::new(rpc);
    let channel = client.channel(addr);
    let options = CallOptions {
        timeout: Some(timeout),
        fail_fast: true,
    };
    for seq in 0..count.max(1) {
        let start = Instant::now();
        let payload = ByteBuf::from(seq.to_le_bytes().to_vec());
        let answer = channel.call_with::<Echo>(&payload, options).await?;
        anyhow::ensure!(answer == payload, "{addr} answered with the wrong bytes");
        println!(
            "reply from {addr}: seq={seq} time={:.3} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn multi_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Resolves on SIGTERM or Ctrl-C.
async fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
