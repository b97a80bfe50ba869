//! The decisions driven together the way the runtime will drive them: a
//! toy control loop keeps records in a map (encoded as they would be in the
//! GCS), plans placement, feeds the outcomes to the lifecycle and plays the
//! nodes' reports back. No IO, no clock.

use std::collections::BTreeMap;

use troupe_core::id::{ActorId, NodeId};
use troupe_core::resources::Resources;
use troupe_worker::{
    decode, encode, plan, step, ActorOptions, ActorRecord, ActorState, Decision, Event, Key,
    NodeRecord, NodeView, Owner, PlacementPolicy, PlacementRequest, RetryLimit,
};

const N1: NodeId = NodeId::new(1);
const N2: NodeId = NodeId::new(2);

/// The GCS as a map of encoded records, plus node liveness (the leases).
#[derive(Default)]
struct Cluster {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    alive: BTreeMap<NodeId, bool>,
}

impl Cluster {
    fn join(&mut self, id: NodeId, gpus: f64) {
        let record = NodeRecord {
            id,
            addr: format!("127.0.0.1:{}", 7000 + id.get()),
            data_addrs: Vec::new(),
            resources: Resources::new().with_gpus(gpus).unwrap(),
            labels: BTreeMap::new(),
            started_at_ms: 0,
            gcs_member: false,
            draining: false,
            node_ttl_ms: 3_000,
        };
        self.kv.insert(Key::Node(id).to_bytes(), encode(&record));
        self.alive.insert(id, true);
    }

    fn spawn(&mut self, id: u64, gpus: f64, max_restarts: RetryLimit) -> ActorId {
        let options = ActorOptions {
            resources: Resources::new().with_gpus(gpus).unwrap(),
            max_restarts,
            ..ActorOptions::default()
        };
        let record = ActorRecord::new(ActorId::new(id), "Model", Owner::Node(N1), options);
        self.put(&record);
        record.id
    }

    fn put(&mut self, record: &ActorRecord) {
        self.kv
            .insert(Key::Actor(record.id).to_bytes(), encode(record));
    }

    /// Every actor record, in id order (the creation order here).
    fn actors(&self) -> Vec<ActorRecord> {
        self.kv
            .iter()
            .filter(|(k, _)| matches!(Key::parse(k), Ok(Key::Actor(_))))
            .map(|(_, v)| decode(v).unwrap())
            .collect()
    }

    fn actor(&self, id: ActorId) -> ActorRecord {
        decode(&self.kv[&Key::Actor(id).to_bytes()]).unwrap()
    }

    fn feed(&mut self, id: ActorId, event: Event) {
        let t = step(&self.actor(id), event);
        self.put(&t.record);
    }

    /// One placement round over every actor waiting for a node.
    fn schedule(&mut self) {
        let actors = self.actors();
        let nodes: Vec<NodeView> = self
            .kv
            .iter()
            .filter(|(k, _)| matches!(Key::parse(k), Ok(Key::Node(_))))
            .map(|(_, v)| {
                let record: NodeRecord = decode(v).unwrap();
                let held = actors
                    .iter()
                    .filter(|a| a.node == Some(record.id))
                    .map(|a| &a.options.resources);
                NodeView::from_record(&record, self.alive[&record.id], held)
            })
            .collect();
        let requests: Vec<PlacementRequest> = actors
            .iter()
            .filter(|a| matches!(a.state, ActorState::Pending | ActorState::Restarting))
            .filter(|a| a.node.is_none())
            .map(|a| PlacementRequest {
                actor: a.id,
                resources: a.options.resources.clone(),
                name: None,
                spread_group: a.options.spread_group.clone(),
            })
            .collect();
        for decision in plan(&nodes, &requests, PlacementPolicy::Spread).decisions {
            match decision {
                Decision::Place { actor, node } => self.feed(actor, Event::Placed { node }),
                Decision::Pending { actor, reason } => self.feed(
                    actor,
                    Event::Unschedulable {
                        reason: reason.to_string(),
                    },
                ),
            }
        }
    }

    /// Every live node reports every actor it was assigned as started.
    fn start_assigned(&mut self) {
        for a in self.actors() {
            if let Some(node) = a.node.filter(|n| self.alive[n]) {
                let incarnation = a.incarnation;
                self.feed(a.id, Event::Started { node, incarnation });
            }
        }
    }

    fn node_dies(&mut self, node: NodeId) {
        self.alive.insert(node, false);
        for a in self.actors() {
            self.feed(a.id, Event::NodeDied { node });
        }
    }

    fn states(&self) -> Vec<(&'static str, Option<NodeId>)> {
        self.actors()
            .iter()
            .map(|a| (a.state.name(), a.node))
            .collect()
    }
}

#[test]
fn fractional_gpu_actors_wait_for_a_node_then_survive_its_neighbours_death() {
    let mut cluster = Cluster::default();
    cluster.join(N1, 1.0);
    let ids: Vec<ActorId> = (1..=4)
        .map(|i| cluster.spawn(i, 0.3, RetryLimit::AtMost(1)))
        .collect();
    cluster.schedule();
    cluster.start_assigned();
    let on_n1 = ("ALIVE", Some(N1));
    assert_eq!(cluster.states(), [on_n1, on_n1, on_n1, ("PENDING", None)]);
    let reason = cluster.actor(ids[3]).pending_reason.unwrap();
    assert!(reason.contains("has 0.1 of 1 GPU free"), "{reason}");

    cluster.join(N2, 1.0);
    cluster.schedule();
    cluster.start_assigned();
    assert_eq!(cluster.actor(ids[3]).state, ActorState::Alive);
    assert_eq!(cluster.actor(ids[3]).node, Some(N2));

    // N1 dies: its three actors restart; N2 has 0.7 GPU left, room for two.
    cluster.node_dies(N1);
    cluster.schedule();
    cluster.start_assigned();
    let on_n2 = ("ALIVE", Some(N2));
    assert_eq!(
        cluster.states(),
        [on_n2, on_n2, ("RESTARTING", None), on_n2]
    );
    assert!(cluster.actors().iter().all(|a| a.restarts <= 1));
    let waiting = cluster.actor(ids[2]).pending_reason.unwrap();
    assert!(waiting.contains("node-0000000000000001, dead"), "{waiting}");

    // N2 dies too: the two that already moved have spent their budget of 1;
    // the one that never moved restarts, and the waiting one keeps waiting.
    cluster.node_dies(N2);
    assert_eq!(
        cluster.states(),
        [
            ("DEAD", None),
            ("DEAD", None),
            ("RESTARTING", None),
            ("RESTARTING", None)
        ]
    );
    let reason = cluster.actor(ids[0]).death_reason().unwrap().to_string();
    assert!(reason.contains("restart budget of 1 was spent"), "{reason}");
    assert_eq!(cluster.actor(ids[3]).restarts, 1);
}

#[test]
fn an_actor_without_restarts_is_dead_after_its_node_dies() {
    let mut cluster = Cluster::default();
    cluster.join(N1, 1.0);
    cluster.join(N2, 1.0);
    let id = cluster.spawn(1, 0.5, RetryLimit::NEVER);
    cluster.schedule();
    cluster.start_assigned();
    let node = cluster.actor(id).node.unwrap();
    cluster.node_dies(node);
    cluster.schedule();
    let record = cluster.actor(id);
    assert_eq!(record.state.name(), "DEAD");
    assert!(record
        .death_reason()
        .unwrap()
        .to_string()
        .contains("max_restarts is 0, so it was not restarted"));
}
