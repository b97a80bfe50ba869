//! Which keys a process's cluster view follows: pure decisions, no IO.
//!
//! A process whose node may run the cluster controller (a GCS member's
//! node) follows all of `/troupe/` ([`Scope::Full`]). Every other process
//! ([`Scope::Narrow`]) follows the node table, the controller's term key,
//! its own assignments (nodes only), the prefixes the layers above asked
//! for (serve's records), the name prefixes its routers route by (a
//! deployment's replicas), the actors named under them, and the actors its
//! calls looked up, until they have been idle for a while.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;
use troupe_core::id::{ActorId, NodeId};
use troupe_gcs::KeySelector;

use crate::schema::keys;
use crate::schema::Key;

/// How an actor looked up by calls stays followed after its last use.
pub const IDLE_ACTOR_TTL: Duration = Duration::from_secs(120);

/// What a process's view covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// All of `/troupe/`: nodes that may run the controller.
    Full,
    /// Only what this process uses; `node` is set on nodes (their own
    /// assignments), `None` on drivers.
    Narrow { node: Option<NodeId> },
}

/// One followed selection of keys: one listing, then one watch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Follow {
    /// Everything under `/troupe/`.
    All,
    /// The node table, `/troupe/nodes/`.
    Nodes,
    /// The controller's term key (to find the controller).
    ControllerTerm,
    /// One node's assignments, `/troupe/assignments/<node>/`.
    Assignments(NodeId),
    /// A layer's own records under this key prefix (serve's `/troupe/serve/`).
    Prefix(String),
    /// Actor names under this key prefix (a deployment's replicas).
    Names(String),
    /// One actor's record, `/troupe/actors/<id>`.
    Actor(ActorId),
}

impl Follow {
    /// The keys it selects.
    pub fn selector(&self) -> KeySelector {
        match self {
            Follow::All => KeySelector::Prefix(keys::ROOT.into()),
            Follow::Nodes => KeySelector::Prefix(keys::NODES_PREFIX.into()),
            Follow::ControllerTerm => KeySelector::Key(keys::CONTROLLER_TERM_KEY.into()),
            Follow::Assignments(node) => KeySelector::Prefix(keys::assignments_of(*node).into()),
            Follow::Prefix(prefix) | Follow::Names(prefix) => {
                KeySelector::Prefix(prefix.clone().into_bytes())
            }
            Follow::Actor(actor) => KeySelector::Key(Key::Actor(*actor).to_bytes()),
        }
    }

    /// Whether the view is not loaded until this has been listed once
    /// (the tables every process reads; an actor is looked up on demand).
    pub fn is_base(&self) -> bool {
        !matches!(self, Follow::Actor(_) | Follow::Names(_))
    }
}

/// What this process's calls and routers asked its view to follow.
#[derive(Debug, Default, Clone)]
pub struct Interests {
    /// Actors looked up by calls, with when each was last used.
    pub actors: HashMap<ActorId, Instant>,
    /// Name prefixes (as key prefixes) routers route by; kept for the
    /// process's life.
    pub names: BTreeSet<String>,
    /// Prefixes of the layers above (kept for the process's life).
    pub prefixes: BTreeSet<String>,
}

impl Interests {
    /// Notes a use of `actor` at `now`; returns whether it is new.
    pub fn use_actor(&mut self, actor: ActorId, now: Instant) -> bool {
        self.actors.insert(actor, now).is_none()
    }
}

/// Everything `scope` follows given the `interests`, and `named`: the
/// actors whose names are under a followed name prefix (they stay followed
/// while their name exists, used or not).
pub fn follows(
    scope: Scope,
    interests: &Interests,
    named: impl IntoIterator<Item = ActorId>,
) -> BTreeSet<Follow> {
    let node = match scope {
        Scope::Full => return BTreeSet::from([Follow::All]),
        Scope::Narrow { node } => node,
    };
    let mut out = BTreeSet::from([Follow::Nodes, Follow::ControllerTerm]);
    out.extend(node.map(Follow::Assignments));
    out.extend(interests.prefixes.iter().cloned().map(Follow::Prefix));
    out.extend(interests.names.iter().cloned().map(Follow::Names));
    out.extend(interests.actors.keys().copied().map(Follow::Actor));
    out.extend(named.into_iter().map(Follow::Actor));
    out
}

/// The actors looked up by calls that were last used `ttl` or longer
/// before `now`: stop following them (a later call looks them up again).
pub fn idle(actors: &HashMap<ActorId, Instant>, now: Instant, ttl: Duration) -> Vec<ActorId> {
    let mut out: Vec<ActorId> = actors
        .iter()
        .filter(|(_, used)| now.saturating_duration_since(**used) >= ttl)
        .map(|(actor, _)| *actor)
        .collect();
    out.sort();
    out
}

/// What to change: the follows to start and those to stop, going from
/// `running` to `wanted`.
pub fn diff(running: &BTreeSet<Follow>, wanted: &BTreeSet<Follow>) -> (Vec<Follow>, Vec<Follow>) {
    let start = wanted.difference(running).cloned().collect();
    let stop = running.difference(wanted).cloned().collect();
    (start, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> NodeId {
        NodeId::new(n)
    }

    fn actor(n: u64) -> ActorId {
        ActorId::new(n)
    }

    #[test]
    fn a_full_view_follows_everything_with_one_watch() {
        let mut interests = Interests::default();
        interests.use_actor(actor(1), Instant::now());
        interests.prefixes.insert("/troupe/serve/".into());
        let follows = follows(Scope::Full, &interests, [actor(2)]);
        assert_eq!(follows, BTreeSet::from([Follow::All]));
        assert!(Follow::All.selector().matches(b"/troupe/actors/x"));
    }

    #[test]
    fn a_node_follows_its_own_assignments_and_what_it_uses_only() {
        let now = Instant::now();
        let mut interests = Interests::default();
        assert!(interests.use_actor(actor(1), now));
        assert!(!interests.use_actor(actor(1), now));
        interests
            .names
            .insert("/troupe/actor-names/serve/app#d#".into());
        interests.prefixes.insert("/troupe/serve/".into());
        let me = node(7);
        let got = follows(Scope::Narrow { node: Some(me) }, &interests, [actor(2)]);
        let expected = BTreeSet::from([
            Follow::Nodes,
            Follow::ControllerTerm,
            Follow::Assignments(me),
            Follow::Prefix("/troupe/serve/".into()),
            Follow::Names("/troupe/actor-names/serve/app#d#".into()),
            Follow::Actor(actor(1)),
            Follow::Actor(actor(2)),
        ]);
        assert_eq!(got, expected);
        // Its selectors take its own assignments, not another node's, and
        // one actor's record, not another's.
        let mine = Key::Assignment {
            node: me,
            actor: actor(3),
        };
        let theirs = Key::Assignment {
            node: node(8),
            actor: actor(3),
        };
        let selected = |key: &Key| got.iter().any(|f| f.selector().matches(&key.to_bytes()));
        assert!(selected(&mine));
        assert!(!selected(&theirs));
        assert!(selected(&Key::Actor(actor(1))));
        assert!(!selected(&Key::Actor(actor(3))));
        assert!(selected(&Key::Node(node(8))));
        assert!(selected(&Key::ControllerTerm));
        assert!(!selected(&Key::Report {
            node: me,
            actor: actor(1)
        }));
        assert!(!selected(&Key::Owner(node(8))));
    }

    #[test]
    fn a_driver_follows_no_assignments() {
        let got = follows(
            Scope::Narrow { node: None },
            &Interests::default(),
            Vec::new(),
        );
        assert_eq!(got, BTreeSet::from([Follow::Nodes, Follow::ControllerTerm]));
        assert!(got.iter().all(Follow::is_base));
        assert!(!Follow::Actor(actor(1)).is_base());
        assert!(!Follow::Names("x".into()).is_base());
    }

    #[test]
    fn actors_idle_for_the_ttl_are_evicted_and_others_kept() {
        let start = Instant::now();
        let ttl = Duration::from_secs(120);
        let mut interests = Interests::default();
        interests.use_actor(actor(1), start);
        interests.use_actor(actor(2), start + Duration::from_secs(60));
        assert!(idle(&interests.actors, start + Duration::from_secs(119), ttl).is_empty());
        assert_eq!(
            idle(&interests.actors, start + ttl, ttl),
            vec![actor(1)],
            "the actor unused for the whole ttl goes"
        );
        // A use renews it.
        interests.use_actor(actor(1), start + Duration::from_secs(100));
        assert_eq!(
            idle(&interests.actors, start + Duration::from_secs(200), ttl),
            vec![actor(2)]
        );
        assert_eq!(
            idle(&interests.actors, start + Duration::from_secs(300), ttl),
            vec![actor(1), actor(2)]
        );
    }

    #[test]
    fn diff_starts_the_new_and_stops_the_gone() {
        let running = BTreeSet::from([Follow::Nodes, Follow::Actor(actor(1))]);
        let wanted = BTreeSet::from([Follow::Nodes, Follow::Actor(actor(2))]);
        let (start, stop) = diff(&running, &wanted);
        assert_eq!(start, vec![Follow::Actor(actor(2))]);
        assert_eq!(stop, vec![Follow::Actor(actor(1))]);
        assert_eq!(diff(&wanted, &wanted), (vec![], vec![]));
    }
}
