//! `troupe serve run APP`: an application on a single node embedded in this
//! process (GCS, worker, controllers, proxy), until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe_core::resources::Resources;
use troupe_core::rpc::ClusterToken;
use troupe_serve::spec::STATUS_PREFIX;
use troupe_serve::{AppState, AppStatus, Catalog, ProxyConfig};
use troupe_worker::{schema, Node, NodeConfig, Role};

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Run one of this binary's applications on a single embedded node
    /// until Ctrl-C (in-flight requests are drained on the way out).
    Run(RunArgs),
    /// List the applications this binary can run.
    List,
    /// Show the applications of a running cluster: their deployments and
    /// replicas with states and messages.
    Status {
        #[command(flatten)]
        cluster: super::node::AddressArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete every application of a running cluster (replicas drain, then
    /// stop).
    Shutdown {
        #[command(flatten)]
        cluster: super::node::AddressArgs,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The application's registered name (see `serve list`).
    app: String,
    /// Where the HTTP proxy listens.
    #[arg(long, default_value = "127.0.0.1:8000")]
    http_listen: String,
    /// Where the admin API and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:8265")]
    dashboard_listen: String,
    /// The node's directory (default: a fresh temp dir, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// CPUs offered to replicas (default: the machine's cores).
    #[arg(long)]
    num_cpus: Option<f64>,
    /// GPUs offered to replicas.
    #[arg(long, default_value_t = 0.0)]
    num_gpus: f64,
}

pub async fn run(command: ServeCommand, catalog: Catalog) -> anyhow::Result<()> {
    match command {
        ServeCommand::List => {
            for name in catalog.app_names() {
                println!("{name}");
            }
            Ok(())
        }
        ServeCommand::Run(args) => serve_run(args, catalog).await,
        ServeCommand::Status { cluster, json } => {
            let cluster = cluster.connect().await?;
            let statuses = statuses(&cluster).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status_json(&statuses))?);
            } else {
                print!("{}", status_table(&statuses));
            }
            Ok(())
        }
        ServeCommand::Shutdown { cluster } => {
            let cluster = cluster.connect().await?;
            let names: Vec<String> = statuses(&cluster).await?.keys().cloned().collect();
            for name in &names {
                troupe_serve::delete(&cluster, name).await?;
            }
            println!(
                "deleted {} application(s): {}",
                names.len(),
                names.join(", ")
            );
            Ok(())
        }
    }
}

/// Every deployed application and its last status (if the controller wrote
/// one yet), read linearizably.
async fn statuses(
    cluster: &troupe_worker::Cluster,
) -> anyhow::Result<std::collections::BTreeMap<String, Option<AppStatus>>> {
    let state = cluster.state().await?;
    let mut out = std::collections::BTreeMap::new();
    for (key, _) in state
        .extra
        .range(troupe_serve::spec::APPS_PREFIX.as_bytes().to_vec()..)
    {
        let Some(name) = key.strip_prefix(troupe_serve::spec::APPS_PREFIX.as_bytes()) else {
            break;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let status = state
            .extra
            .get(format!("{STATUS_PREFIX}{name}").as_bytes())
            .and_then(|v| schema::decode::<AppStatus>(v).ok());
        out.insert(name, status);
    }
    Ok(out)
}

fn status_json(
    statuses: &std::collections::BTreeMap<String, Option<AppStatus>>,
) -> serde_json::Value {
    let apps: serde_json::Map<String, serde_json::Value> = statuses
        .iter()
        .map(|(name, status)| {
            let value = match status {
                None => serde_json::json!({ "status": "NOT_STARTED", "message": "", "deployments": {} }),
                Some(s) => serde_json::json!({
                    "status": s.state.name(),
                    "message": s.message,
                    "deployments": s.deployments.iter().map(|(d, ds)| (d.clone(), serde_json::json!({
                        "status": ds.state.name(),
                        "message": ds.message,
                        "target_replicas": ds.target_replicas,
                        "replicas": ds.replicas.iter().map(|r| serde_json::json!({
                            "replica_id": r.id.to_string(),
                            "actor_id": r.actor.to_string(),
                            "state": format!("{:?}", r.state).to_uppercase(),
                            "node_id": r.node.map(|n| n.to_string()),
                        })).collect::<Vec<_>>(),
                    }))).collect::<serde_json::Map<_, _>>(),
                }),
            };
            (name.clone(), value)
        })
        .collect();
    serde_json::json!({ "applications": apps })
}

fn status_table(statuses: &std::collections::BTreeMap<String, Option<AppStatus>>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if statuses.is_empty() {
        out.push_str("no applications\n");
    }
    for (name, status) in statuses {
        let Some(s) = status else {
            let _ = writeln!(out, "{name}  NOT_STARTED");
            continue;
        };
        let message = if s.message.is_empty() {
            String::new()
        } else {
            format!("  ({})", s.message)
        };
        let _ = writeln!(out, "{name}  {}{message}", s.state.name());
        for (d, ds) in &s.deployments {
            let running = ds
                .replicas
                .iter()
                .filter(|r| r.state == troupe_serve::spec::ReplicaState::Running)
                .count();
            let message = if ds.message.is_empty() {
                String::new()
            } else {
                format!("  ({})", ds.message)
            };
            let _ = writeln!(
                out,
                "  {d}  {}  {running}/{} replicas running{message}",
                ds.state.name(),
                ds.target_replicas
            );
        }
    }
    out
}

async fn serve_run(args: RunArgs, catalog: Catalog) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(app) = catalog.build_app(&args.app) else {
        let known: Vec<&str> = catalog.app_names().collect();
        bail!(
            "no application named {:?} in this binary; it has: {}",
            args.app,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("troupe-serve-{}", std::process::id())),
            true,
        ),
    };
    let mut config = NodeConfig::new(Role::Head, ClusterToken::random(), &dir);
    let mut resources = match args.num_cpus {
        Some(cpus) => Resources::new().with_cpus(cpus).context("--num-cpus")?,
        None => config.resources.clone(),
    };
    resources = resources.with_gpus(args.num_gpus).context("--num-gpus")?;
    config.resources = resources;
    let node = Node::start(config, catalog.registry()).await?;
    let proxy = ProxyConfig {
        listen: args.http_listen.clone(),
        ..ProxyConfig::default()
    };
    let admin = troupe_serve::AdminConfig {
        listen: args.dashboard_listen.clone(),
        token: None,
    };
    let roles = troupe_serve::start(&node, Some(proxy), Some(admin))?;
    let http = roles.proxy_addr().expect("the proxy was asked for");
    let name = app.name().to_owned();
    let cluster = node.cluster();
    let spec = app.clone().into_spec().map_err(anyhow::Error::msg)?;
    troupe_serve::deploy(&cluster, app).await?;
    let status = wait_for_app(&cluster, &name).await?;
    let prefix = spec.route_prefix.clone().unwrap_or_default();
    match status.state {
        AppState::Running => println!(
            "application {name} is RUNNING at http://{http}{} (ready {:.0} ms after start); Ctrl-C to stop",
            if prefix == "/" { "" } else { &prefix },
            started.elapsed().as_secs_f64() * 1e3
        ),
        _ => {
            roles.stop().await;
            node.shutdown().await;
            bail!("application {name} is {}: {}", status.state.name(), status.message);
        }
    }
    super::wait_for_shutdown_signal().await?;
    println!("draining requests in flight and stopping");
    roles.stop().await;
    node.shutdown().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Waits until `app` is RUNNING or DEPLOY_FAILED (or 60 s pass).
async fn wait_for_app(cluster: &troupe_worker::Cluster, app: &str) -> anyhow::Result<AppStatus> {
    let key = format!("{STATUS_PREFIX}{app}").into_bytes();
    let mut changes = cluster.state_changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.read_state(|s| {
            s.extra
                .get(&key)
                .and_then(|v| schema::decode::<AppStatus>(v).ok())
        });
        if let Some(status) = status {
            if matches!(status.state, AppState::Running | AppState::DeployFailed) {
                return Ok(status);
            }
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            bail!("application {app} did not become RUNNING within 60 s; see the node's log");
        }
    }
}
