//! `troupe-actors`: a Troupe node binary that hosts the example's actor
//! types (`troupe-actors start --head`, `... start --join ADDR`, `status`,
//! `stop`: the `troupe` CLI), plus `troupe-actors demo`, a driver that
//! trains a toy model with a parameter server and trainers spread over the
//! cluster, and `troupe-actors bench`, the actor layer's benchmarks. See
//! README.md next to this file.

mod bench;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use troupe::prelude::*;
use troupe_examples::actors::{
    registry, Add, Counter, Get, ParameterServer, Pull, ServerConfig, Shard, Train, Trainer,
    WhereAreYou,
};

/// `troupe-actors demo`: run the example against a running cluster.
#[derive(Debug, Parser)]
#[command(name = "troupe-actors demo")]
struct DemoArgs {
    /// Any node's address. Without it the demo runs on a single node
    /// embedded in this process (a one-member GCS in a temp directory).
    #[arg(long)]
    address: Option<String>,
    /// The cluster token (or TROUPE_CLUSTER_TOKEN); needed with --address.
    #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How many trainers.
    #[arg(long, default_value_t = 4)]
    trainers: usize,
    /// Gradient steps per trainer.
    #[arg(long, default_value_t = 50)]
    steps: u32,
}

fn main() -> ExitCode {
    let mut args = std::env::args();
    let first = args.nth(1);
    if first.as_deref() == Some("bench") {
        let bench = bench::BenchArgs::parse_from(std::env::args().skip(1));
        return troupe_examples::run_subcommand("troupe-actors bench", bench::run(bench));
    }
    if first.as_deref() == Some("demo") {
        let demo = DemoArgs::parse_from(std::env::args().skip(1));
        return troupe_examples::run_subcommand("troupe-actors demo", run_demo(demo));
    }
    troupe::cli::run(registry())
}

async fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    let Some(address) = args.address.clone() else {
        // The embedded single-node default.
        let dir = std::env::temp_dir().join(format!("troupe-actors-demo-{}", std::process::id()));
        let token = troupe::core::rpc::ClusterToken::random();
        let node = troupe::Node::start(
            troupe::NodeConfig::new(troupe::Role::Head, token, &dir),
            registry(),
        )
        .await
        .context("starting the embedded node")?;
        println!("embedded single node {} on {}", node.id(), node.addr());
        let result = demo(node.cluster(), &args).await;
        node.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    };
    let token = args
        .token
        .clone()
        .context("--address needs the cluster token: --token or TROUPE_CLUSTER_TOKEN")?;
    let cluster = Cluster::connect(&address, troupe::core::rpc::ClusterToken::new(&token)?)
        .await
        .context("connecting to the cluster")?;
    demo(cluster, &args).await
}

async fn demo(cluster: Cluster, args: &DemoArgs) -> anyhow::Result<()> {
    // 1. A named counter, called from here.
    let started = Instant::now();
    let counter = cluster.spawn::<Counter>(10).num_cpus(0.1).await?;
    let first = counter.call(Add(1)).await?;
    println!(
        "counter {} on {}: 10 + 1 = {first} (spawn to first reply {:.1} ms)",
        counter.id(),
        counter.call(WhereAreYou).await?,
        started.elapsed().as_secs_f64() * 1e3
    );
    for i in 0..100 {
        counter.call(Add(i)).await?;
    }
    println!("after 100 more adds: {}", counter.call(Get).await?);

    // 2. A parameter server and trainers, each trainer on its own shard of
    //    y = 3 x0 - 2 x1 + 0.5 x2.
    let truth = [3.0, -2.0, 0.5];
    let server_name = format!("params-{}", cluster.id());
    let server = cluster
        .spawn::<ParameterServer>(ServerConfig {
            dimensions: truth.len(),
            learning_rate: 0.05,
        })
        .name(&server_name)
        .num_cpus(0.5)
        .await?;
    let mut trainers = Vec::new();
    for t in 0..args.trainers {
        let samples = (0..64)
            .map(|i| {
                let x: Vec<f64> = (0..truth.len())
                    .map(|d| (((t * 64 + i) * (d + 3)) % 17) as f64 / 8.0 - 1.0)
                    .collect();
                let y = x.iter().zip(truth).map(|(a, b)| a * b).sum();
                (x, y)
            })
            .collect();
        trainers.push(
            cluster
                .spawn::<Trainer>(Shard { samples })
                .num_cpus(0.25)
                .await?,
        );
    }
    let started = Instant::now();
    let runs = trainers.iter().map(|trainer| {
        let (trainer, server) = (trainer.clone(), server_name.clone());
        let steps = args.steps;
        async move { trainer.call(Train { server, steps }).await }
    });
    let losses = futures_join(runs).await;
    for (i, loss) in losses.into_iter().enumerate() {
        let loss = loss?.map_err(anyhow::Error::msg)?;
        println!("trainer {i}: last loss {loss:.6}");
    }
    let weights = server.call(Pull).await?;
    println!(
        "learned weights {:?} (truth {truth:?}) in {:.0} ms",
        weights
            .iter()
            .map(|w| (w * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        started.elapsed().as_secs_f64() * 1e3
    );
    for trainer in &trainers {
        cluster.kill(trainer.id()).await?;
    }
    cluster.kill(server.id()).await?;
    cluster.kill(counter.id()).await?;
    Ok(())
}

/// Awaits every future, concurrently.
async fn futures_join<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("a demo task panicked"));
    }
    out
}
