//! `troupe serve ...`: run, deploy, build and inspect applications.
//! `serve run` embeds a single node (GCS, worker, controllers, proxy) in
//! this process unless given a cluster's --address.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe_core::resources::Resources;
use troupe_core::rpc::ClusterToken;
use troupe_serve::config::{self, ProxyLocation, ServeConfig};
use troupe_serve::controller::autoscaler;
use troupe_serve::limits;
use troupe_serve::spec::{AppSpec, STATUS_PREFIX};
use troupe_serve::{declarative, AppStatus, Catalog, ProxyConfig};
use troupe_worker::{schema, Node, NodeConfig, Role};

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Run a config file (or one of this binary's applications by name) on
    /// a single node embedded in this process, or on the cluster at
    /// --address, until Ctrl-C (then the applications are deleted and
    /// requests in flight drained).
    Run(RunArgs),
    /// Deploy a config file to a running cluster as its whole desired
    /// state: applications missing from it are deleted. Waits until every
    /// application is RUNNING, showing replicas as they become ready.
    Deploy {
        /// The YAML config (see `serve build`).
        config: PathBuf,
        #[command(flatten)]
        cluster: super::node::AddressArgs,
        /// Give up waiting after this many seconds (exit status 1).
        #[arg(long, default_value_t = 120.0)]
        timeout: f64,
        /// Return once the config is written, without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Print the config last deployed to a running cluster.
    Config {
        #[command(flatten)]
        cluster: super::node::AddressArgs,
    },
    /// Write a config with every application this binary can run and all
    /// of its deployments' options at their defaults.
    Build {
        /// Write it here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// JSON (the admin API's PUT body) instead of YAML.
        #[arg(long)]
        json: bool,
    },
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
    /// A config file (.yaml, .yml or .json), or the registered name of an
    /// application (see `serve list`).
    target: String,
    /// Deploy to the cluster at this node address instead of an embedded
    /// node.
    #[arg(long)]
    address: Option<String>,
    /// The cluster token, with --address (or TROUPE_CLUSTER_TOKEN).
    #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where the embedded HTTP proxy listens (default: the config's
    /// http_options, else 127.0.0.1:8000).
    #[arg(long)]
    http_listen: Option<String>,
    /// Where the embedded admin API and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:8265")]
    dashboard_listen: String,
    /// The embedded node's directory (default: a fresh temp dir, removed on
    /// exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// CPUs the embedded node offers to replicas (default: the machine's
    /// cores).
    #[arg(long)]
    num_cpus: Option<f64>,
    /// GPUs the embedded node offers to replicas.
    #[arg(long, default_value_t = 0.0)]
    num_gpus: f64,
    /// Give up waiting for RUNNING after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
}

impl RunArgs {
    /// The config file, if the target is one.
    pub fn config_path(&self) -> Option<PathBuf> {
        let path = PathBuf::from(&self.target);
        let is_file_name = [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| self.target.ends_with(ext));
        (is_file_name || path.is_file()).then_some(path)
    }
}

/// Reads and checks a config file; the error lists every problem.
/// It is refused before it is parsed when over the admin API's limits
/// (size, nesting: [`troupe_serve::limits`]).
pub fn read_config(path: &Path) -> anyhow::Result<ServeConfig> {
    let text = read_limited(path)?;
    config::parse_yaml(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid config; nothing was deployed. Fix these and retry:\n{e}",
            path.display()
        )
    })
}

/// A config file's text, refused before it is parsed when it is over the
/// size or nesting limits (`troupe_serve::limits`, as the admin API).
fn read_limited(path: &Path) -> anyhow::Result<String> {
    let refused = |e: limits::LimitError| anyhow::anyhow!("{}: {e}", path.display());
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("reading the config {}", path.display()))?
        .len();
    limits::check_config_size("the config file", bytes as usize).map_err(refused)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config {}", path.display()))?;
    limits::check_config_size("the config file", text.len()).map_err(refused)?;
    limits::check_nesting(&text, limits::MAX_NESTING).map_err(refused)?;
    Ok(text)
}

/// Reads a config file to deploy and checks it whole against this
/// binary's `catalog` ([`config::check_yaml`]: the schema, builder and
/// deployment names, refusals): one error lists every problem. For a
/// running cluster (`on_cluster`), `http_options` its proxies do not
/// apply are set aside with a warning on stderr.
fn read_deployable(
    path: &Path,
    catalog: &Catalog,
    on_cluster: bool,
) -> anyhow::Result<ServeConfig> {
    let text = read_limited(path)?;
    let (mut config, _) = config::check_yaml(&text, catalog).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid config; nothing was deployed. Fix these and retry:\n{e}",
            path.display()
        )
    })?;
    if on_cluster {
        for warning in config::set_aside_http_options(&mut config) {
            eprintln!("troupe: warning: {warning}");
        }
    }
    Ok(config)
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{flag} must be a positive number of seconds, got {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

pub async fn run(command: ServeCommand, catalog: Catalog) -> anyhow::Result<()> {
    match command {
        ServeCommand::List => {
            for name in catalog.app_names() {
                println!("{name}");
            }
            Ok(())
        }
        ServeCommand::Build { output, json } => {
            let config = config::describe(&catalog)
                .map_err(|e| anyhow::anyhow!("cannot describe this binary's applications:\n{e}"))?;
            let text = match json {
                true => serde_json::to_string_pretty(&config)? + "\n",
                false => config::to_yaml(&config),
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote {} application(s) to {}; edit it, then `troupe serve deploy {}`",
                        config.applications.len(),
                        path.display(),
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        ServeCommand::Run(args) => serve_run(args, catalog).await,
        ServeCommand::Deploy {
            config,
            cluster,
            timeout,
            no_wait,
        } => {
            let timeout = seconds(timeout, "--timeout")?;
            let config = read_deployable(&config, &catalog, true)?;
            let cluster = cluster.connect().await?;
            let done = declarative::apply(&cluster, &catalog, &config).await?;
            report_deployed(&done);
            if no_wait {
                return Ok(());
            }
            wait_for_apps(&cluster, &done, timeout).await?;
            Ok(())
        }
        ServeCommand::Config { cluster } => {
            let cluster = cluster.connect().await?;
            match declarative::deployed_config(&cluster).await? {
                Some(config) => {
                    print!("{}", config::to_yaml(&config));
                    Ok(())
                }
                None => bail!(
                    "no config has been deployed to this cluster; deploy one with `troupe serve deploy CONFIG`"
                ),
            }
        }
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
            let names: Vec<String> = statuses(&cluster).await?.apps.keys().cloned().collect();
            declarative::delete_all(&cluster).await?;
            println!(
                "deleted {} application(s): {}",
                names.len(),
                names.join(", ")
            );
            Ok(())
        }
    }
}

fn report_deployed(done: &declarative::Deployed) {
    for line in declarative::deployed_lines(done) {
        println!("{line}");
    }
}

/// Every deployed application with its spec, its last status (if the
/// controller wrote one yet) and its autoscaling record, read
/// linearizably.
#[derive(Default)]
struct Statuses {
    apps: std::collections::BTreeMap<String, Option<AppStatus>>,
    specs: std::collections::BTreeMap<String, AppSpec>,
    scaling: std::collections::BTreeMap<String, autoscaler::AutoscaleRecord>,
}

async fn statuses(cluster: &troupe_worker::Cluster) -> anyhow::Result<Statuses> {
    let state = cluster.state().await?;
    let mut out = Statuses {
        scaling: autoscaler::records(&state),
        ..Statuses::default()
    };
    for (key, value) in state
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
        if let Ok(spec) = schema::decode::<AppSpec>(value) {
            out.specs.insert(name.clone(), spec);
        }
        out.apps.insert(name, status);
    }
    Ok(out)
}

fn status_json(statuses: &Statuses) -> serde_json::Value {
    let Statuses {
        apps,
        specs,
        scaling,
    } = statuses;
    let apps: serde_json::Map<String, serde_json::Value> = apps
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
                        "autoscaling": specs.get(name).and_then(|spec| autoscaler::status_json(spec, d, scaling.get(name))),
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

fn status_table(statuses: &Statuses) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if statuses.apps.is_empty() {
        out.push_str("no applications\n");
    }
    for (name, status) in &statuses.apps {
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
            let _ = writeln!(out, "  {d}  {}  {}", ds.state.name(), ds.summary());
            let scaling = statuses
                .specs
                .get(name)
                .and_then(|spec| autoscaler::status_line(spec, d, statuses.scaling.get(name)));
            if let Some(line) = scaling {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

async fn serve_run(args: RunArgs, catalog: Catalog) -> anyhow::Result<()> {
    let started = Instant::now();
    let timeout = seconds(args.timeout, "--timeout")?;
    // The embedded node's proxy starts from the config; a cluster's runs.
    let config = match args.config_path() {
        Some(path) => read_deployable(&path, &catalog, args.address.is_some())?,
        None => {
            let Some(app) = catalog.build_app(&args.target) else {
                let known: Vec<&str> = catalog.app_names().collect();
                bail!(
                    "{:?} is neither a config file nor an application of this binary; it has: {}",
                    args.target,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            let spec = app.into_spec().map_err(anyhow::Error::msg)?;
            ServeConfig {
                applications: vec![config::AppConfig {
                    name: args.target.clone(),
                    route_prefix: spec.route_prefix.clone(),
                    app: args.target.clone(),
                    import_path: None,
                    args: serde_json::Value::Null,
                    deployments: Vec::new(),
                }],
                ..ServeConfig::default()
            }
        }
    };
    if let Some(address) = &args.address {
        let Some(token) = &args.token else {
            bail!("--address needs the cluster token: pass --token or set TROUPE_CLUSTER_TOKEN");
        };
        let cluster = troupe_worker::Cluster::connect_with(address, super::rpc_config(token)?)
            .await
            .with_context(|| format!("connecting to the cluster through {address}"))?;
        let done = declarative::apply(&cluster, &catalog, &config).await?;
        report_deployed(&done);
        wait_for_apps(&cluster, &done, timeout).await?;
        println!("Ctrl-C to delete the applications");
        super::wait_for_shutdown_signal().await?;
        declarative::delete_all(&cluster).await?;
        println!("deleted the applications");
        return Ok(());
    }
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("troupe-serve-{}", std::process::id())),
            true,
        ),
    };
    let mut node_config = NodeConfig::new(Role::Head, ClusterToken::random(), &dir);
    let mut resources = match args.num_cpus {
        Some(cpus) => Resources::new().with_cpus(cpus).context("--num-cpus")?,
        None => node_config.resources.clone(),
    };
    resources = resources.with_gpus(args.num_gpus).context("--num-gpus")?;
    node_config.resources = resources;
    let http = &config.http_options;
    if config.proxy_location != ProxyLocation::Disabled {
        node_config.labels.insert(
            troupe_serve::spec::PROXY_LABEL.into(),
            format!("{}:{}", http.host, http.port),
        );
    }
    let node = Node::start(node_config, catalog.registry()).await?;
    let proxy = (config.proxy_location != ProxyLocation::Disabled).then(|| ProxyConfig {
        listen: args
            .http_listen
            .clone()
            .unwrap_or_else(|| format!("{}:{}", http.host, http.port)),
        max_body_bytes: http.max_body_bytes as usize,
        request_timeout: Duration::from_secs_f64(http.request_timeout_s),
        access_log: config.logging_config.enable_access_log,
        ..ProxyConfig::default()
    });
    let admin = troupe_serve::AdminConfig {
        listen: args.dashboard_listen.clone(),
        token: None,
        also_accept: Vec::new(),
        catalog: catalog.clone(),
    };
    let roles = troupe_serve::start(&node, proxy, Some(admin))?;
    let cluster = node.cluster();
    let outcome = async {
        let done = declarative::apply(&cluster, &catalog, &config).await?;
        wait_for_apps(&cluster, &done, timeout).await
    }
    .await;
    if let Err(e) = outcome {
        roles.stop().await;
        node.shutdown().await;
        return Err(e);
    }
    for app in &config.applications {
        match (roles.proxy_addr(), &app.route_prefix) {
            (Some(addr), Some(prefix)) => println!(
                "application {} is RUNNING at http://{addr}{}",
                app.name,
                if prefix == "/" { "" } else { prefix }
            ),
            _ => println!("application {} is RUNNING (no HTTP route)", app.name),
        }
    }
    println!(
        "ready {:.0} ms after start; admin API at http://{}; Ctrl-C to stop",
        started.elapsed().as_secs_f64() * 1e3,
        roles.admin_addr().map_or("-".into(), |a| a.to_string())
    );
    super::wait_for_shutdown_signal().await?;
    println!("draining requests in flight and stopping");
    roles.stop().await;
    node.shutdown().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Waits until every application `done` deployed is RUNNING at its new
/// version and replica counts, printing its replicas as they become ready.
async fn wait_for_apps(
    cluster: &troupe_worker::Cluster,
    done: &declarative::Deployed,
    timeout: Duration,
) -> anyhow::Result<()> {
    declarative::wait_deployed(cluster, done, timeout, |line| println!("{line}")).await?;
    Ok(())
}

#[cfg(test)]
mod read_config_tests {
    use super::read_config;

    #[test]
    fn a_config_over_the_limits_is_refused_before_it_is_parsed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let deep = dir.path().join("deep.yaml");
        std::fs::write(&deep, "[".repeat(100_000)).expect("write");
        let error = read_config(&deep).unwrap_err().to_string();
        assert!(
            error.contains("nests more than 128 levels deep (at line 1)"),
            "{error}"
        );
        let large = dir.path().join("large.yaml");
        let text = format!(
            "applications: []\n# {}\n",
            "x".repeat(troupe_serve::limits::MAX_CONFIG_BYTES)
        );
        std::fs::write(&large, text).expect("write");
        let error = read_config(&large).unwrap_err().to_string();
        assert!(error.contains("over the limit of 1572864 bytes"), "{error}");
    }
}
