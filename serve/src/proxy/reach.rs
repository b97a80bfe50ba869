//! Whether this proxy can reach what it routes to: what its `/-/healthz`
//! tells a load balancer beyond "the proxy runs".
//!
//! A proxy cut off from the rest of the cluster (a partition, a dead
//! link) still runs and still answers its health check; a balancer keeps
//! sending it requests that fail if a deployment they need has no replica
//! on its side. So the proxy reports itself unhealthy when, for some
//! deployment of an application it routes, every running replica is on a
//! node this process's data path has ejected (see
//! `troupe_worker::health`): another proxy may reach them. It never counts
//! its own node as ejected, and a deployment with no running replica (scaled
//! to zero, starting) does not count: a request for it waits for a replica
//! on any proxy alike. The routers are not changed by it: a request that
//! arrives anyway is still tried on the ejected nodes' replicas.

use troupe_core::id::NodeId;
use troupe_worker::ClusterState;

use crate::records::ServeRecords;
use crate::router::read_deployment;

/// A deployment this proxy cannot reach: its application and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreachable {
    pub app: String,
    pub deployment: String,
}

impl Unreachable {
    /// The `/-/healthz` body.
    pub(crate) fn reason(&self) -> String {
        format!(
            "unreachable: every replica of deployment {:?} of application {:?} is on a node \
             this proxy cannot reach; send requests to another proxy",
            self.deployment, self.app
        )
    }
}

/// The first deployment of an application with a route whose every
/// running replica is on an ejected node other than `me`, if any.
pub(crate) fn unreachable(
    records: &ServeRecords,
    state: &ClusterState,
    me: NodeId,
    ejected: impl Fn(NodeId) -> bool,
) -> Option<Unreachable> {
    records.routes.iter().find_map(|route| {
        let app = records.apps.get(&route.app)?;
        app.deployments.iter().find_map(|d| {
            let view = read_deployment(records, state, &app.name, &d.name);
            let cut_off = !view.replicas.is_empty()
                && view.replicas.iter().all(|(_, n)| *n != me && ejected(*n));
            cut_off.then(|| Unreachable {
                app: app.name.clone(),
                deployment: d.name.clone(),
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use troupe_core::id::{ActorId, ReplicaId};
    use troupe_worker::lifecycle::ActorState;
    use troupe_worker::schema::{ActorName, ActorOptions, ActorRecord, Owner};

    use super::*;
    use crate::spec::{replica_name, AppSpec, DeploymentSpec, APPS_PREFIX, REPLICA_NAMESPACE};

    fn node(n: u64) -> NodeId {
        NodeId::new(n)
    }

    /// App `a` (routed at `/a`: `front` calls `back`) and app `h` (no
    /// route, one deployment `solo`).
    fn state(replicas: &[(&str, &str, u64, ActorState)]) -> ClusterState {
        let mut state = ClusterState::default();
        let apps = [
            AppSpec {
                name: "a".into(),
                route_prefix: Some("/a".into()),
                ingress: "front".into(),
                streaming: false,
                deployments: vec![
                    DeploymentSpec::for_tests("front", "Front", 1, 2),
                    DeploymentSpec::for_tests("back", "Back", 1, 2),
                ],
                version: 1,
            },
            AppSpec {
                name: "h".into(),
                route_prefix: None,
                ingress: "solo".into(),
                streaming: false,
                deployments: vec![DeploymentSpec::for_tests("solo", "Solo", 1, 1)],
                version: 1,
            },
        ];
        for spec in apps {
            state.extra.insert(
                format!("{APPS_PREFIX}{}", spec.name).into_bytes(),
                troupe_worker::schema::encode(&spec),
            );
        }
        for (k, (app, deployment, on, alive)) in replicas.iter().enumerate() {
            let id = ActorId::new(k as u64 + 1);
            let mut record =
                ActorRecord::new(id, "T", Owner::Node(node(1)), ActorOptions::default());
            let name = replica_name(app, deployment, 1, ReplicaId::new(k as u64 + 1));
            record.name = Some(ActorName::new(REPLICA_NAMESPACE, name).unwrap());
            record.node = Some(node(*on));
            record.state = alive.clone();
            state.actors.insert(id, record);
        }
        state
    }

    fn check(state: &ClusterState, me: u64, ejected: &[u64]) -> Option<String> {
        let records = ServeRecords::decode(state);
        unreachable(&records, state, node(me), |n| {
            ejected.iter().any(|&e| node(e) == n)
        })
        .map(|u| format!("{}/{}", u.app, u.deployment))
    }

    const ALIVE: ActorState = ActorState::Alive;

    #[test]
    fn a_deployment_whose_every_replica_is_ejected_is_unreachable() {
        // `back` runs only on nodes 2 and 3; `front` also here (node 1).
        let s = state(&[
            ("a", "front", 1, ALIVE),
            ("a", "front", 2, ALIVE),
            ("a", "back", 2, ALIVE),
            ("a", "back", 3, ALIVE),
        ]);
        assert_eq!(check(&s, 1, &[]), None);
        // One of `back`'s nodes is left: reachable.
        assert_eq!(check(&s, 1, &[2]), None);
        // Both gone from here: the inner deployment counts, not only the
        // ingress (this node's `front` replica calls it).
        assert_eq!(check(&s, 1, &[2, 3]).as_deref(), Some("a/back"));
        let reason = Unreachable {
            app: "a".into(),
            deployment: "back".into(),
        }
        .reason();
        assert!(reason.starts_with("unreachable: ") && reason.contains("another proxy"));
    }

    #[test]
    fn its_own_node_and_deployments_without_running_replicas_never_count() {
        // Every replica here: even an (impossible) ejection of its own
        // node does not make it unreachable.
        let s = state(&[("a", "front", 1, ALIVE), ("a", "back", 1, ALIVE)]);
        assert_eq!(check(&s, 1, &[1, 2]), None);
        // Scaled to zero or starting: a request waits for a replica,
        // whichever proxy takes it.
        let s = state(&[
            ("a", "front", 1, ALIVE),
            ("a", "back", 2, ActorState::Pending),
        ]);
        assert_eq!(check(&s, 1, &[2]), None);
        // An application without a route is not this proxy's business.
        let s = state(&[
            ("a", "front", 1, ALIVE),
            ("a", "back", 1, ALIVE),
            ("h", "solo", 2, ALIVE),
        ]);
        assert_eq!(check(&s, 1, &[2]), None);
    }
}
