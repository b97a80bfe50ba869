//! The serve layer's records in the GCS: desired state ([`AppSpec`], with
//! its [`DeploymentSpec`]s) written by whoever deploys, and observed state
//! ([`AppStatus`]) written by the serve controller.
//!
//! | key | value |
//! | --- | --- |
//! | `/troupe/serve/apps/<app>` | [`AppSpec`] |
//! | `/troupe/serve/status/<app>` | [`AppStatus`] |
//! | `/troupe/serve/deployed-at/<app>` | when the application was last deployed with a change: seconds since the Unix epoch, as JSON (Ray's `last_deployed_time_s`) |
//! | `/troupe/serve/controller-term` | the serve controller's claim (a `ControllerTermRecord`, see `troupe_worker::fencing`) |
//!
//! Replicas are actors named `<app>#<deployment>#<version>#<replica-id>`
//! in the actor namespace `serve`: the actor table is the source of truth
//! for which replicas exist, so a new controller adopts them as they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use troupe_core::id::{ActorId, NodeId, ReplicaId};
use troupe_core::resources::Resources;
use troupe_worker::schema::{ActorName, Record};

use crate::autoscale::AutoscalingPolicy;

/// The root of every key serve writes: a process's cluster view follows it
/// (see [`crate::records::follow`]).
pub const SERVE_ROOT: &str = "/troupe/serve/";
/// Prefix of the application specs.
pub const APPS_PREFIX: &str = "/troupe/serve/apps/";
/// Prefix of the application statuses.
pub const STATUS_PREFIX: &str = "/troupe/serve/status/";
/// Prefix of the applications' deploy times (JSON seconds since the Unix
/// epoch, by the deploying process's clock; for display only).
pub const DEPLOYED_AT_PREFIX: &str = "/troupe/serve/deployed-at/";
/// The node label (in its node record) of a node that runs an HTTP proxy;
/// its value is the address the proxy was asked to listen on.
pub const PROXY_LABEL: &str = "troupe.serve/http-proxy";
/// The serve controller's fencing key.
pub const TERM_KEY: &str = "/troupe/serve/controller-term";
/// The actor namespace of replicas.
pub const REPLICA_NAMESPACE: &str = "serve";

/// One deployment of an application, as deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSpec {
    pub name: String,
    /// Bumped (to the application's version) when its replicas must be
    /// replaced; replicas are named with it.
    pub version: u64,
    /// The registered deployment type.
    pub type_name: String,
    /// The constructor argument, encoded.
    pub args: Vec<u8>,
    pub num_replicas: u32,
    /// Requests one replica runs at once (Ray's default: 5).
    pub max_ongoing_requests: u32,
    /// Requests a caller queues when every replica is full; `None`:
    /// without limit (Ray's `-1`).
    pub max_queued_requests: Option<u32>,
    /// What one replica needs.
    pub resources: Resources,
    /// JSON text handed to `reconfigure`.
    pub user_config: Option<String>,
    pub health_check_period_ms: u64,
    pub health_check_timeout_ms: u64,
    pub graceful_shutdown_timeout_ms: u64,
    /// Whether a request in flight on a replica that was lost (its node
    /// died, froze or was cut off) is sent again to another replica within
    /// its deadline. The lost replica may have run it, so deployments whose
    /// requests must not run twice set this to false. Default true.
    pub retry_lost_requests: bool,
    /// Its `autoscaling_config` (Ray's defaults applied), when the
    /// autoscaler sets its replica count: `num_replicas` is then the
    /// count it starts with, and the serve controller's autoscaling record
    /// holds the current target.
    pub autoscaling: Option<AutoscalingPolicy>,
}

impl DeploymentSpec {
    /// A spec with Ray's defaults, for tests.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str, type_name: &str, version: u64, replicas: u32) -> Self {
        DeploymentSpec {
            name: name.into(),
            version,
            type_name: type_name.into(),
            args: vec![],
            num_replicas: replicas,
            max_ongoing_requests: 5,
            max_queued_requests: None,
            resources: Default::default(),
            user_config: None,
            health_check_period_ms: 10_000,
            health_check_timeout_ms: 30_000,
            graceful_shutdown_timeout_ms: 20_000,
            retry_lost_requests: true,
            autoscaling: None,
        }
    }

    /// Whether replicas of `self` and `other` are interchangeable (same
    /// code, arguments and resources): if not, a new version replaces them.
    /// Every other field is a lightweight option, changed in place as in
    /// Ray Serve: the replica count, the queue limits, the health-check
    /// and shutdown options, and `user_config` (the serve controller hands
    /// the new one to `reconfigure` on each running replica).
    pub fn same_replicas(&self, other: &DeploymentSpec) -> bool {
        self.type_name == other.type_name
            && self.args == other.args
            && self.resources == other.resources
    }
}

/// An application, as deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: String,
    /// Where the proxy serves it; `None`: only through handles.
    pub route_prefix: Option<String>,
    /// The deployment that answers HTTP.
    pub ingress: String,
    /// Whether the ingress streams its responses (`StreamingIngress`).
    pub streaming: bool,
    pub deployments: Vec<DeploymentSpec>,
    /// Bumped by every deploy that changes a deployment's replicas.
    pub version: u64,
}

impl Record for AppSpec {
    const KIND: &'static str = "serve application";

    fn decode_older(version: u16, body: &[u8]) -> Option<Result<Self, String>> {
        (version == 3).then(|| v3::decode(body))
    }
}

/// Application specs as schema version 3 wrote them: deployments without
/// [`DeploymentSpec::autoscaling`]. Read and converted, never written.
mod v3 {
    use serde::Deserialize;
    use troupe_core::resources::Resources;

    use super::{AppSpec, DeploymentSpec};

    #[derive(Deserialize)]
    struct Deployment {
        name: String,
        version: u64,
        type_name: String,
        args: Vec<u8>,
        num_replicas: u32,
        max_ongoing_requests: u32,
        max_queued_requests: Option<u32>,
        resources: Resources,
        user_config: Option<String>,
        health_check_period_ms: u64,
        health_check_timeout_ms: u64,
        graceful_shutdown_timeout_ms: u64,
        retry_lost_requests: bool,
    }

    #[derive(Deserialize)]
    struct App {
        name: String,
        route_prefix: Option<String>,
        ingress: String,
        streaming: bool,
        deployments: Vec<Deployment>,
        version: u64,
    }

    pub(super) fn decode(body: &[u8]) -> Result<AppSpec, String> {
        let app: App = troupe_worker::schema::deserialize(body)?;
        let deployments = app
            .deployments
            .into_iter()
            .map(|d| DeploymentSpec {
                name: d.name,
                version: d.version,
                type_name: d.type_name,
                args: d.args,
                num_replicas: d.num_replicas,
                max_ongoing_requests: d.max_ongoing_requests,
                max_queued_requests: d.max_queued_requests,
                resources: d.resources,
                user_config: d.user_config,
                health_check_period_ms: d.health_check_period_ms,
                health_check_timeout_ms: d.health_check_timeout_ms,
                graceful_shutdown_timeout_ms: d.graceful_shutdown_timeout_ms,
                retry_lost_requests: d.retry_lost_requests,
                autoscaling: None,
            })
            .collect();
        Ok(AppSpec {
            name: app.name,
            route_prefix: app.route_prefix,
            ingress: app.ingress,
            streaming: app.streaming,
            deployments,
            version: app.version,
        })
    }
}

/// Where an application is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppState {
    NotStarted,
    Deploying,
    Running,
    Unhealthy,
    DeployFailed,
    Deleting,
}

impl AppState {
    pub fn name(self) -> &'static str {
        match self {
            AppState::NotStarted => "NOT_STARTED",
            AppState::Deploying => "DEPLOYING",
            AppState::Running => "RUNNING",
            AppState::Unhealthy => "UNHEALTHY",
            AppState::DeployFailed => "DEPLOY_FAILED",
            AppState::Deleting => "DELETING",
        }
    }
}

/// Where a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentState {
    Updating,
    Healthy,
    Unhealthy,
    DeployFailed,
}

impl DeploymentState {
    pub fn name(self) -> &'static str {
        match self {
            DeploymentState::Updating => "UPDATING",
            DeploymentState::Healthy => "HEALTHY",
            DeploymentState::Unhealthy => "UNHEALTHY",
            DeploymentState::DeployFailed => "DEPLOY_FAILED",
        }
    }
}

/// Where a replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    Starting,
    Running,
    Stopping,
}

/// One replica as the controller last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: ReplicaId,
    pub actor: ActorId,
    pub version: u64,
    pub state: ReplicaState,
    pub node: Option<NodeId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStatus {
    pub state: DeploymentState,
    pub message: String,
    pub target_replicas: u32,
    pub replicas: Vec<ReplicaStatus>,
}

impl DeploymentStatus {
    /// `2/3 replicas running`, with the deployment's message if it has one.
    pub fn summary(&self) -> String {
        let running = self
            .replicas
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .count();
        // The controller's own "n of m replicas running" says nothing more.
        let message = if self.message.is_empty() || self.message.ends_with("replicas running") {
            String::new()
        } else {
            format!("  ({})", self.message)
        };
        format!(
            "{running}/{} replicas running{message}",
            self.target_replicas
        )
    }
}

/// An application as the controller last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppStatus {
    pub name: String,
    pub state: AppState,
    pub message: String,
    pub version: u64,
    pub deployments: BTreeMap<String, DeploymentStatus>,
}

impl Record for AppStatus {
    const KIND: &'static str = "serve application status";
}

/// Decodes a stored [`AppStatus`].
pub fn decode_status(value: &[u8]) -> Option<AppStatus> {
    troupe_worker::schema::decode(value).ok()
}

/// The actor name of a replica.
pub fn replica_name(app: &str, deployment: &str, version: u64, replica: ReplicaId) -> String {
    format!("{app}#{deployment}#{version}#{replica}")
}

/// The key prefix of the names of `app`/`deployment`'s replicas (every
/// version): what a router's process follows to learn its replica set.
pub fn replica_names_of(app: &str, deployment: &str) -> String {
    format!(
        "{}{REPLICA_NAMESPACE}/{app}#{deployment}#",
        troupe_worker::schema::keys::ACTOR_NAMES_PREFIX
    )
}

/// The spread group of a deployment's replicas: every version's replicas
/// of one deployment spread over the nodes together, so losing a node
/// leaves replicas of every deployment elsewhere while there is room.
pub fn spread_group(app: &str, deployment: &str) -> String {
    format!("serve:{app}#{deployment}")
}

/// A replica actor's name, parsed: app, deployment, version, replica id.
pub fn parse_replica_name(name: &ActorName) -> Option<(&str, &str, u64, ReplicaId)> {
    if name.namespace() != REPLICA_NAMESPACE {
        return None;
    }
    let mut parts = name.name().split('#');
    let (app, deployment, version, replica) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((
        app,
        deployment,
        version.parse().ok()?,
        replica.parse().ok()?,
    ))
}

/// Checks an application or deployment name: usable in keys and replica
/// names.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err(format!("{what} {name:?} must be 1 to 100 characters long"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(format!(
            "{what} {name:?} contains {bad:?}; use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_names_round_trip_and_foreign_names_are_not_replicas() {
        let id = ReplicaId::new(42);
        let name = ActorName::new(REPLICA_NAMESPACE, replica_name("app", "dep", 3, id)).unwrap();
        assert_eq!(parse_replica_name(&name), Some(("app", "dep", 3, id)));
        let key = troupe_worker::Key::ActorName(name).to_string();
        assert!(key.starts_with(&replica_names_of("app", "dep")), "{key}");
        assert!(!key.starts_with(&replica_names_of("app", "de")), "{key}");
        let other = ActorName::new("default", replica_name("app", "dep", 3, id)).unwrap();
        assert_eq!(parse_replica_name(&other), None);
        let short = ActorName::new(REPLICA_NAMESPACE, "app#dep").unwrap();
        assert_eq!(parse_replica_name(&short), None);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("application", "hello-world_2.0").is_ok());
        assert!(check_name("application", "").is_err());
        assert!(check_name("deployment", "a#b").unwrap_err().contains("'#'"));
    }
}
