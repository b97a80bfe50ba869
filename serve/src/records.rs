//! Serve's GCS records (the desired applications and their statuses),
//! decoded once per view revision into one typed cache that the proxy (its
//! route table), the routers (their deployments) and the serve controller
//! share. A process's cluster view holds the records as raw bytes
//! (`ClusterState::extra`); [`of`] hands out the decoded form of the
//! revision a caller is looking at, decoding it only when that revision
//! has not been decoded yet.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use troupe_core::id::{ActorId, NodeId};
use troupe_worker::{schema, Cluster, ClusterState};

use crate::spec::{AppSpec, AppStatus, DeploymentSpec, ReplicaState, APPS_PREFIX, STATUS_PREFIX};

/// Serve's records at one revision, typed.
#[derive(Debug, Default)]
pub struct ServeRecords {
    /// The view revision they were decoded from.
    pub revision: u64,
    /// The view generation they were decoded from (what the cache
    /// compares: a narrow view changes without its revision moving).
    pub generation: u64,
    /// Desired applications by name.
    pub apps: BTreeMap<String, AppSpec>,
    /// The controller's last statuses by application name.
    pub statuses: BTreeMap<String, AppStatus>,
    /// The proxy's route table (longest prefix first).
    pub routes: Vec<Route>,
}

impl ServeRecords {
    /// Decodes the records in `state`; records this binary cannot read are
    /// skipped (and logged by whoever wrote them wrongly).
    pub fn decode(state: &ClusterState) -> ServeRecords {
        let mut apps = BTreeMap::new();
        let mut statuses = BTreeMap::new();
        for (key, value) in &state.extra {
            if key.starts_with(APPS_PREFIX.as_bytes()) {
                if let Ok(spec) = schema::decode::<AppSpec>(value) {
                    apps.insert(spec.name.clone(), spec);
                }
            } else if key.starts_with(STATUS_PREFIX.as_bytes()) {
                if let Ok(status) = schema::decode::<AppStatus>(value) {
                    statuses.insert(status.name.clone(), status);
                }
            }
        }
        ServeRecords {
            revision: state.revision,
            generation: state.generation,
            routes: routes(apps.values().cloned()),
            apps,
            statuses,
        }
    }

    /// The spec of `app`/`deployment`.
    pub fn deployment(&self, app: &str, deployment: &str) -> Option<&DeploymentSpec> {
        self.apps
            .get(app)?
            .deployments
            .iter()
            .find(|d| d.name == deployment)
    }

    /// Replicas of `app`/`deployment` the controller is stopping (they take
    /// no new requests).
    pub fn stopping(&self, app: &str, deployment: &str) -> Vec<ActorId> {
        self.statuses
            .get(app)
            .and_then(|s| s.deployments.get(deployment))
            .map(|d| {
                d.replicas
                    .iter()
                    .filter(|r| r.state == ReplicaState::Stopping)
                    .map(|r| r.actor)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One route: a prefix and the application's ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub app: String,
    pub ingress: String,
    pub streaming: bool,
}

/// The routes of every application with a prefix, longest prefix first.
pub fn routes(specs: impl IntoIterator<Item = AppSpec>) -> Vec<Route> {
    let mut routes: Vec<Route> = specs
        .into_iter()
        .filter_map(|s| {
            Some(Route {
                prefix: s.route_prefix?,
                app: s.name,
                ingress: s.ingress,
                streaming: s.streaming,
            })
        })
        .collect();
    routes.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then(a.prefix.cmp(&b.prefix))
    });
    routes
}

/// The route for `path` and the path as the application sees it.
pub fn find_route<'a>(routes: &'a [Route], path: &str) -> Option<(&'a Route, String)> {
    routes.iter().find_map(|r| {
        if r.prefix == "/" {
            return Some((r, path.to_owned()));
        }
        let rest = path.strip_prefix(r.prefix.as_str())?;
        match rest {
            "" => Some((r, "/".to_owned())),
            _ if rest.starts_with('/') => Some((r, rest.to_owned())),
            _ => None,
        }
    })
}

/// The last decoded records of each cluster view in this process (one per
/// node; tests run several nodes in one process).
fn caches() -> &'static Mutex<HashMap<NodeId, Arc<ServeRecords>>> {
    static CACHES: OnceLock<Mutex<HashMap<NodeId, Arc<ServeRecords>>>> = OnceLock::new();
    CACHES.get_or_init(Mutex::default)
}

/// The typed records of `state`, which is `cluster`'s view: from the cache
/// when this revision was decoded already.
pub fn of(cluster: &Cluster, state: &ClusterState) -> Arc<ServeRecords> {
    follow(cluster);
    let mut caches = caches().lock().unwrap_or_else(|p| p.into_inner());
    match caches.get(&cluster.id()) {
        Some(cached) if cached.generation == state.generation && state.generation != 0 => {
            cached.clone()
        }
        _ => {
            let decoded = Arc::new(ServeRecords::decode(state));
            caches.insert(cluster.id(), decoded.clone());
            decoded
        }
    }
}

/// Makes `cluster`'s view follow serve's records (`/troupe/serve/`); a
/// view that holds all of `/troupe/` has them already. Idempotent, never
/// waits: every reader of the records calls it.
pub fn follow(cluster: &Cluster) {
    cluster.follow_prefix(crate::spec::SERVE_ROOT);
}

/// The typed records of `cluster`'s view now.
pub fn current(cluster: &Cluster) -> Arc<ServeRecords> {
    cluster.read_state(|state| of(cluster, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AppState, DeploymentState, DeploymentStatus, ReplicaStatus};

    fn app(name: &str, prefix: &str) -> AppSpec {
        AppSpec {
            name: name.into(),
            route_prefix: Some(prefix.into()),
            ingress: "in".into(),
            streaming: false,
            deployments: vec![DeploymentSpec::for_tests("in", "T", 1, 2)],
            version: 1,
        }
    }

    #[test]
    fn records_decode_into_apps_statuses_and_routes() {
        let mut state = ClusterState {
            revision: 9,
            ..ClusterState::default()
        };
        for spec in [app("a", "/a"), app("b", "/")] {
            state.extra.insert(
                format!("{APPS_PREFIX}{}", spec.name).into_bytes(),
                schema::encode(&spec),
            );
        }
        let stopping = ActorId::new(4);
        let status = AppStatus {
            name: "a".into(),
            state: AppState::Running,
            message: String::new(),
            version: 1,
            deployments: BTreeMap::from([(
                "in".to_string(),
                DeploymentStatus {
                    state: DeploymentState::Healthy,
                    message: String::new(),
                    target_replicas: 1,
                    replicas: vec![ReplicaStatus {
                        id: troupe_core::id::ReplicaId::random(),
                        actor: stopping,
                        version: 1,
                        state: ReplicaState::Stopping,
                        node: None,
                    }],
                },
            )]),
        };
        state.extra.insert(
            format!("{STATUS_PREFIX}a").into_bytes(),
            schema::encode(&status),
        );
        // Not a serve record, and a record that does not decode: skipped.
        state.extra.insert(b"/troupe/other".to_vec(), vec![1]);
        state
            .extra
            .insert(format!("{APPS_PREFIX}bad").into_bytes(), vec![0xff]);
        let records = ServeRecords::decode(&state);
        assert_eq!(records.revision, 9);
        assert_eq!(records.apps.len(), 2);
        assert_eq!(records.routes[0].prefix, "/a");
        assert_eq!(records.deployment("a", "in").unwrap().num_replicas, 2);
        assert!(records.deployment("a", "nope").is_none());
        assert_eq!(records.stopping("a", "in"), vec![stopping]);
        assert!(records.stopping("b", "in").is_empty());
    }
}
