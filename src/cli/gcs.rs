//! `troupe gcs ...`: run a control-store member, manage membership, back
//! the store up and restore it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe_core::rpc::{RpcClient, RpcServer};
use troupe_gcs::api::{AdminReply, AdminRequest, Membership};
use troupe_gcs::backup;
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::health::{self, member_id, parse_member_id};
use troupe_gcs::member::{GcsConfig, GcsMember};

#[derive(Debug, Subcommand)]
pub enum GcsCommand {
    /// Run a GCS member in the foreground until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Show the members of the control store: who leads, each member's
    /// address, liveness and lag, and flags for unreachable voters and
    /// voters sharing an address.
    Members(ClientArgs),
    /// Add a running member (started with `gcs serve` without
    /// --bootstrap): it catches up as a learner, then becomes a voter.
    /// Safe to repeat. A member recorded at the same address under another
    /// id (one that lost its data directory) is replaced by it in the same
    /// change.
    Add {
        #[command(flatten)]
        client: ClientArgs,
        /// The new member's id (never one a removed member had), as
        /// node-<16 hex digits> or decimal.
        #[arg(long, value_parser = parse_member_id)]
        id: u64,
        /// The new member's RPC address.
        #[arg(long)]
        addr: String,
        /// Keep it a non-voting learner.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member for good (its id is never accepted again).
    Remove {
        #[command(flatten)]
        client: ClientArgs,
        /// The member's id as `troupe status` and `gcs members` show it
        /// (node-<16 hex digits>), or decimal.
        #[arg(long, value_parser = parse_member_id)]
        id: u64,
    },
    /// Back up the control store to a file, or restore a backup as a new
    /// cluster (like `etcdctl snapshot save/restore`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent copy of the whole store (the leader's state at a
    /// linearizable read point) to FILE, atomically, with a checksum.
    Save {
        /// The backup file to write (replaced if it exists).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
        /// Save the state the member at the first --address has applied,
        /// without asking the leader: for recovering from a quorum lost for
        /// good (OPERATIONS.md). It may lack the last writes the cluster
        /// committed that this member had not applied; pick the member
        /// with the highest applied index (`troupe gcs members`).
        #[arg(long)]
        local: bool,
    },
    /// Check FILE's checksum and write its state into a new data directory,
    /// as a NEW cluster whose only member is --id; other nodes join it
    /// afterwards. Then start it with `troupe start --head --data-dir DIR`
    /// (or, with --member-dir, `troupe gcs serve --id ID --data-dir DIR
    /// --bootstrap`).
    Restore {
        /// The backup file `gcs snapshot save` wrote.
        file: PathBuf,
        /// The new directory (absent or empty; never overwritten).
        #[arg(long)]
        data_dir: PathBuf,
        /// The new member's id (node-<16 hex digits> or decimal). With the
        /// node layout it becomes the node's id too.
        #[arg(long, default_value = "1", value_parser = parse_member_id)]
        id: u64,
        /// The address the new member will listen on, recorded in the
        /// membership. A member started on another address records that one
        /// instead when it starts.
        #[arg(long, default_value = "127.0.0.1:6380")]
        addr: String,
        /// Write a `troupe gcs serve` member directory instead of a node
        /// directory (which holds the node id and the member's data under
        /// gcs/).
        #[arg(long)]
        member_dir: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// This member's id: unique in the cluster, never reused
    /// (node-<16 hex digits> or decimal).
    #[arg(long, value_parser = parse_member_id)]
    id: u64,
    /// Where the log and the state machine live. Restarting on the same
    /// directory keeps every acknowledged write.
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on for RPC (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:6380")]
    listen: String,
    /// Start a new cluster with this member as its only voter. Ignored
    /// when the data directory already holds a cluster.
    #[arg(long)]
    bootstrap: bool,
    /// The cluster token (or set TROUPE_CLUSTER_TOKEN).
    #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
    token: String,
    /// Take a snapshot (and purge the log behind it) every this many entries.
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Also take one once the log since the last snapshot holds this many
    /// MiB (entries are batches of writes; 0 turns this off).
    #[arg(long, default_value_t = 64)]
    snapshot_log_mib: u64,
    /// How often the leader heartbeats followers, in milliseconds.
    #[arg(long, default_value_t = 50)]
    heartbeat_ms: u64,
    /// A follower that hears no leader for a random time between these two
    /// (milliseconds) starts an election. Raise them on slow networks.
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], default_values_t = [150, 300])]
    election_timeout_ms: Vec<u64>,
    /// Entries of batched writes the leader keeps in flight (proposed, not
    /// yet committed); writes arriving meanwhile join the next entry.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    max_proposals_in_flight: u64,
    /// Seconds after which the store forgets the exactly-once session of a
    /// client that stopped writing (at least 30).
    #[arg(long, value_name = "SECONDS", default_value_t = troupe_gcs::DEFAULT_SESSION_RETENTION.as_secs_f64())]
    session_retention: f64,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Addresses of GCS members (any node running one), comma-separated.
    #[arg(
        long,
        visible_alias = "gcs",
        value_delimiter = ',',
        default_value = "127.0.0.1:6380"
    )]
    address: Vec<String>,
    /// The cluster token (or set TROUPE_CLUSTER_TOKEN).
    #[arg(long, env = "TROUPE_CLUSTER_TOKEN", hide_env_values = true)]
    token: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<GcsClient> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            bail!(
                "--timeout must be a positive number of seconds, got {}",
                self.timeout
            );
        }
        let rpc = RpcClient::new(super::rpc_config(&self.token)?);
        let mut config = ClientConfig::new(self.address.clone());
        config.request_timeout = self.timeout();
        Ok(GcsClient::new(rpc, config)?)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

/// How long `status` and `gcs members` wait for each member's answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The control store's members, probed one by one, as text: what
/// `troupe status` and `troupe gcs members` print.
pub async fn members_report(client: &GcsClient, rpc: &RpcClient) -> anyhow::Result<String> {
    let status = client.status().await?;
    let probes = health::probe(rpc, &status.membership.addrs(), PROBE_TIMEOUT).await;
    let report = health::report(&probes, Some(&status));
    Ok(health::render(&report))
}

pub fn run(command: GcsCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            GcsCommand::Serve(args) => serve(args).await,
            GcsCommand::Members(args) => {
                let client = args.client()?;
                let rpc = RpcClient::new(super::rpc_config(&args.token)?);
                print!("{}", members_report(&client, &rpc).await?);
                Ok(())
            }
            GcsCommand::Add {
                client,
                id,
                addr,
                learner,
            } => {
                let client = client.client()?;
                let reply = if learner {
                    client.admin(AdminRequest::AddLearner { id, addr }).await?;
                    client.admin(AdminRequest::Status).await?
                } else {
                    // Idempotent, and replaces a member recorded at `addr`
                    // under another id once `addr` answers as `id`.
                    client.admin(AdminRequest::Join { id, addr }).await?
                };
                print_reply(reply);
                Ok(())
            }
            GcsCommand::Remove { client, id } => {
                let reply = client.client()?.admin(AdminRequest::Remove { id }).await?;
                print_reply(reply);
                Ok(())
            }
            GcsCommand::Snapshot(SnapshotCommand::Save {
                file,
                client,
                local,
            }) => save(&file, &client, local).await,
            GcsCommand::Snapshot(SnapshotCommand::Restore {
                file,
                data_dir,
                id,
                addr,
                member_dir,
            }) => restore(&file, &data_dir, id, &addr, member_dir).await,
        }
    })
}

async fn save(file: &std::path::Path, args: &ClientArgs, local: bool) -> anyhow::Result<()> {
    let client = args.client()?;
    let fetched = match local {
        true => backup::fetch_local(&client, &args.address[0]).await?,
        false => backup::fetch(&client, args.timeout()).await?,
    };
    let bytes = backup::save(file, &fetched.body)?;
    println!(
        "saved revision {} from member {} to {} ({bytes} bytes, crc32 checksum)",
        fetched.revision,
        member_id(fetched.member),
        file.display()
    );
    Ok(())
}

async fn restore(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    id: u64,
    addr: &str,
    member_layout: bool,
) -> anyhow::Result<()> {
    let payload = backup::load(file)?;
    let member_dir = if member_layout {
        data_dir.to_path_buf()
    } else {
        backup::require_empty(data_dir)?;
        troupe_worker::write_node_id(data_dir, troupe_core::id::NodeId::new(id))?;
        troupe_worker::gcs_data_dir(data_dir)
    };
    let restored = backup::restore(payload, &member_dir, id, addr).await?;
    let start = if member_layout {
        format!(
            "troupe gcs serve --id {id} --data-dir {} --listen {addr} --bootstrap",
            data_dir.display()
        )
    } else {
        format!(
            "troupe start --head --data-dir {} --listen {addr}",
            data_dir.display()
        )
    };
    println!(
        "restored revision {} ({} keys) from {} into {} as a new cluster whose only member is {}\n\
         start it with: {start}\nthen join other nodes to it (they start empty and catch up)",
        restored.revision,
        restored.keys,
        file.display(),
        data_dir.display(),
        member_id(id)
    );
    Ok(())
}

fn print_reply(reply: AdminReply) {
    match reply {
        AdminReply::Membership(m) => print_membership(&m),
        AdminReply::Status(s) => print_membership(&s.membership),
    }
}

fn print_membership(m: &Membership) {
    println!("{:<21}  {:<7}  address", "id", "role");
    for (id, addr) in &m.voters {
        println!("{:<21}  {:<7}  {addr}", member_id(*id), "voter");
    }
    for (id, addr) in &m.learners {
        println!("{:<21}  {:<7}  {addr}", member_id(*id), "learner");
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let rpc_config = super::rpc_config(&args.token)?;
    let mut config = GcsConfig::new(args.id, &args.data_dir);
    config.snapshot_every = args.snapshot_every;
    config.snapshot_log_bytes = args.snapshot_log_mib.saturating_mul(1 << 20);
    config.batch.max_in_flight = args.max_proposals_in_flight as usize;
    config.sessions = troupe_gcs::SessionRetention::from_flag(args.session_retention)
        .map_err(anyhow::Error::msg)?;
    let [min, max] = args.election_timeout_ms[..] else {
        bail!("--election-timeout-ms takes two numbers: MIN MAX");
    };
    if !(args.heartbeat_ms > 0 && args.heartbeat_ms < min && min < max) {
        bail!(
            "need 0 < --heartbeat-ms < election MIN < MAX, got heartbeat {} and election {min}..{max}",
            args.heartbeat_ms
        );
    }
    config.heartbeat = Duration::from_millis(args.heartbeat_ms);
    config.election_timeout = (Duration::from_millis(min), Duration::from_millis(max));
    let member = GcsMember::open(config, RpcClient::new(rpc_config.clone()))
        .await
        .with_context(|| {
            format!(
                "starting GCS member {} on {}",
                args.id,
                args.data_dir.display()
            )
        })?;
    let server = member
        .register(RpcServer::new(rpc_config))
        .bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}; is another process using it?", args.listen))?;
    let addr = server.local_addr().to_string();
    if args.bootstrap {
        member.bootstrap(&addr).await?;
    }
    // One parseable line for scripts and tests; logs go to stderr.
    println!("gcs member {} listening on {addr}", member_id(args.id));
    super::wait_for_shutdown_signal().await?;
    tracing::info!(member = args.id, "shutting down");
    server.shutdown().await;
    member.shutdown().await?;
    Ok(())
}
