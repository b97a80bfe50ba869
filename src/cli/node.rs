//! `troupe start`, `troupe status`, `troupe stop`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use troupe_core::resources::Resources;
use troupe_core::rpc::{CallOptions, ClusterToken, RpcClient};
use troupe_serve::{AdminConfig, Catalog, ProxyConfig};
use troupe_worker::{Cluster, GcsTiming, Node, NodeConfig, Role};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Start a new cluster: this node runs its control store.
    #[arg(long, conflicts_with = "join", required_unless_present = "join")]
    head: bool,
    /// Join the cluster through any node's address (host:port).
    #[arg(long, value_name = "ADDR")]
    join: Option<String>,
    /// With --join: also become a member of the control store (three such
    /// nodes make it survive losing one).
    #[arg(long, requires = "join")]
    gcs: bool,
    /// Address for the node's RPC port (port 0 picks a free one).
    /// Default: 127.0.0.1:6380 for --head, 127.0.0.1:0 otherwise.
    #[arg(long)]
    listen: Option<String>,
    /// The node's directory (its id; the control store's data on GCS
    /// nodes). Default: a directory under the system's temp dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The cluster token (or TROUPE_CLUSTER_TOKEN). A head node without one
    /// makes one up and prints it.
    #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// While rotating the cluster token: also accept this one from other
    /// nodes (repeat for several, or set TROUPE_ACCEPT_TOKEN, comma-separated;
    /// see OPERATIONS.md).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TROUPE_ACCEPT_TOKEN",
        value_delimiter = ','
    )]
    accept_token: Vec<String>,
    /// CPUs offered to actors (default: the machine's cores).
    #[arg(long)]
    num_cpus: Option<f64>,
    /// GPUs offered to actors.
    #[arg(long, default_value_t = 0.0)]
    num_gpus: f64,
    /// Custom resources as JSON, e.g. '{"accel": 2}'.
    #[arg(long)]
    resources: Option<String>,
    /// Seconds after which a node that stopped renewing its lease is
    /// declared dead and its actors restarted elsewhere.
    #[arg(long, default_value_t = 3.0)]
    node_ttl: f64,
    /// Seconds a DEAD actor's record (why it died) and its reports stay in
    /// the control store before they are deleted; calls to it then fail
    /// with "no actor with id" instead of its death reason.
    #[arg(long, value_name = "SECONDS", default_value_t = troupe_worker::DEFAULT_DEAD_ACTOR_RETENTION.as_secs_f64())]
    dead_actor_retention: f64,
    /// Threads hosting actors (default: one per core).
    #[arg(long)]
    actor_threads: Option<usize>,
    /// Where this node's HTTP proxy listens (Ray Serve's default port is
    /// 8000; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8000")]
    http_listen: String,
    /// Run no HTTP proxy on this node.
    #[arg(long)]
    no_http: bool,
    /// Where this node's admin API and /metrics listen. Default:
    /// 127.0.0.1:8265 (Ray's dashboard port) on the head, a free port on
    /// joining nodes (printed at start).
    #[arg(long)]
    dashboard_listen: Option<String>,
    /// Run no admin API on this node.
    #[arg(long)]
    no_dashboard: bool,
    /// Require `Authorization: Bearer TOKEN` on the admin API (or set
    /// TROUPE_ADMIN_TOKEN).
    #[arg(long, env = "TROUPE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// While rotating the admin token: also accept this one (repeat for
    /// several; needs --admin-token).
    #[arg(long, value_name = "TOKEN", requires = "admin_token")]
    accept_admin_token: Vec<String>,
    /// Control-store leader heartbeat, milliseconds.
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// Seconds after which the control store forgets the exactly-once
    /// session of a client that stopped writing (on GCS members; at least
    /// 30).
    #[arg(long, value_name = "SECONDS", default_value_t = default_session_retention())]
    session_retention: f64,
    /// Control-store election timeout range, milliseconds.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [150, 300])]
    election_timeout_ms: Vec<u64>,
}

fn default_session_retention() -> f64 {
    troupe_gcs::DEFAULT_SESSION_RETENTION.as_secs_f64()
}

#[derive(Debug, Args)]
pub struct AddressArgs {
    /// Any node's address (host:port).
    #[arg(long, visible_alias = "gcs", default_value = "127.0.0.1:6380")]
    address: String,
    /// The cluster token (or TROUPE_CLUSTER_TOKEN).
    #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
    token: String,
}

/// Custom resources from `{"name": amount, ...}`.
pub fn parse_resources(json: &str, mut base: Resources) -> anyhow::Result<Resources> {
    let map: BTreeMap<String, f64> = serde_json::from_str(json).with_context(|| {
        format!("--resources must be a JSON object of names to numbers, like '{{\"accel\": 2}}'; got {json:?}")
    })?;
    for (name, amount) in map {
        base = base
            .with_custom(name.clone(), amount)
            .with_context(|| format!("--resources {name:?}"))?;
    }
    Ok(base)
}

fn config(args: &StartArgs) -> anyhow::Result<(NodeConfig, Option<String>)> {
    let role = match &args.join {
        Some(addr) => Role::Join {
            addr: addr.clone(),
            gcs: args.gcs,
        },
        None => Role::Head,
    };
    let (token, made_up) = match (&args.token, &role) {
        (Some(t), _) => (t.clone(), None),
        (None, Role::Head) => {
            let bytes: [u8; 16] = rand::random();
            let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            (t.clone(), Some(t))
        }
        (None, Role::Join { .. }) => bail!(
            "--join needs the cluster token: pass --token or set TROUPE_CLUSTER_TOKEN to the \
             token the head node printed"
        ),
    };
    let listen = args.listen.clone().unwrap_or_else(|| match role {
        Role::Head => "127.0.0.1:6380".into(),
        Role::Join { .. } => "127.0.0.1:0".into(),
    });
    let data_dir = args.data_dir.clone().unwrap_or_else(|| {
        let name = match role {
            Role::Head => "head".to_string(),
            Role::Join { .. } => format!("node-{}", std::process::id()),
        };
        std::env::temp_dir().join("troupe").join(name)
    });
    let mut config = NodeConfig::new(role, ClusterToken::new(&token)?, data_dir);
    config.listen = listen;
    config.also_accept = args
        .accept_token
        .iter()
        .map(ClusterToken::new)
        .collect::<Result<_, _>>()
        .context("--accept-token")?;
    let mut resources = Resources::new();
    if let Some(cpus) = args.num_cpus {
        resources = resources.with_cpus(cpus).context("--num-cpus")?;
    } else {
        resources = config.resources.clone();
    }
    resources = resources.with_gpus(args.num_gpus).context("--num-gpus")?;
    if let Some(json) = &args.resources {
        resources = parse_resources(json, resources)?;
    }
    config.resources = resources;
    if !(args.node_ttl.is_finite() && args.node_ttl >= 0.3) {
        bail!(
            "--node-ttl must be at least 0.3 seconds, got {}",
            args.node_ttl
        );
    }
    config.node_ttl = Duration::from_secs_f64(args.node_ttl);
    if !(args.dead_actor_retention.is_finite() && args.dead_actor_retention >= 0.0) {
        bail!(
            "--dead-actor-retention must be a number of seconds, 0 or more, got {}",
            args.dead_actor_retention
        );
    }
    config.dead_actor_retention = Duration::from_secs_f64(args.dead_actor_retention);
    if let Some(threads) = args.actor_threads {
        if threads == 0 {
            bail!("--actor-threads must be at least 1");
        }
        config.actor_threads = threads;
    }
    let [min, max] = args.election_timeout_ms[..] else {
        bail!("--election-timeout-ms takes two numbers: MIN MAX");
    };
    if !(args.heartbeat_ms > 0 && args.heartbeat_ms < min && min < max) {
        bail!(
            "need 0 < --heartbeat-ms < election MIN < MAX, got heartbeat {} and election {min}..{max}",
            args.heartbeat_ms
        );
    }
    config.gcs = GcsTiming {
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        election_timeout: (Duration::from_millis(min), Duration::from_millis(max)),
        sessions: troupe_gcs::SessionRetention::from_flag(args.session_retention)
            .map_err(anyhow::Error::msg)?,
        ..GcsTiming::default()
    };
    Ok((config, made_up))
}

pub async fn start(args: StartArgs, catalog: Catalog) -> anyhow::Result<()> {
    let (mut config, made_up_token) = config(&args)?;
    if !args.no_http {
        // Tells the admin API (Ray's `proxies`) which nodes run a proxy.
        config.labels.insert(
            troupe_serve::spec::PROXY_LABEL.into(),
            args.http_listen.clone(),
        );
    }
    let data_dir = config.data_dir.clone();
    let node = Node::start(config, catalog.registry())
        .await
        .with_context(|| format!("starting the node (data dir {})", data_dir.display()))?;
    let proxy = (!args.no_http).then(|| ProxyConfig {
        listen: args.http_listen.clone(),
        ..ProxyConfig::default()
    });
    let admin = (!args.no_dashboard).then(|| AdminConfig {
        listen: args.dashboard_listen.clone().unwrap_or_else(|| {
            match args.join {
                None => "127.0.0.1:8265",
                // Several nodes may share a machine: joiners pick a free port.
                Some(_) => "127.0.0.1:0",
            }
            .into()
        }),
        token: args.admin_token.clone(),
        also_accept: args.accept_admin_token.clone(),
        catalog: catalog.clone(),
    });
    let roles = troupe_serve::start(&node, proxy, admin)?;
    if let Some(token) = made_up_token {
        println!(
            "cluster token: {token}  (pass it to other nodes as --token or TROUPE_CLUSTER_TOKEN)"
        );
    }
    // One parseable line for scripts and tests; logs go to stderr.
    let mut line = format!("node {} listening on {}", node.id(), node.addr());
    if let Some(http) = roles.proxy_addr() {
        line.push_str(&format!(" http {http}"));
    }
    if let Some(admin) = roles.admin_addr() {
        line.push_str(&format!(" admin {admin}"));
    }
    println!("{line}");
    tokio::select! {
        r = super::wait_for_shutdown_signal() => r?,
        () = node.shutdown_requested() => {}
    }
    tracing::info!(node = %node.id(), "leaving the cluster");
    roles.stop().await;
    node.shutdown().await;
    Ok(())
}

impl AddressArgs {
    /// A driver connected through `--address`.
    pub async fn connect(&self) -> anyhow::Result<Cluster> {
        Cluster::connect_with(&self.address, super::rpc_config(&self.token)?)
            .await
            .with_context(|| format!("connecting to the cluster through {}", self.address))
    }
}

/// The cluster's nodes and actors, then the control store's members: who
/// leads, each member's liveness and lag, and what needs the operator. The
/// members are probed even when the store cannot commit (the node tables
/// then fail to load, after the members are shown).
pub async fn status(args: AddressArgs) -> anyhow::Result<()> {
    let cluster = args.connect().await?;
    let rpc = RpcClient::new(super::rpc_config(&args.token)?);
    let members = super::gcs::members_report(cluster.gcs(), &rpc).await;
    let state = cluster.state().await;
    if let Ok(state) = &state {
        print!("{}", troupe_worker::status::render(state));
    }
    match members {
        Ok(text) => print!("{text}"),
        Err(e) => println!("gcs: the members could not be listed: {e:#}"),
    }
    state?;
    Ok(())
}

pub async fn stop(args: AddressArgs) -> anyhow::Result<()> {
    let rpc = RpcClient::new(super::rpc_config(&args.token)?);
    rpc.channel(&args.address)
        .call_with::<troupe_worker::NodeAdminProtocol>(
            &troupe_worker::NodeAdminRequest::Shutdown,
            CallOptions::timeout(Duration::from_secs(10)),
        )
        .await
        .with_context(|| format!("asking the node at {} to stop", args.address))?;
    println!("node at {} is leaving the cluster", args.address);
    Ok(())
}
