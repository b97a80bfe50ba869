//! The watch hub: routes each applied revision to the watchers whose
//! selector matches one of its keys, so a write costs O(matching watchers),
//! not O(watchers).
//!
//! The state machine calls [`WatchHub::publish`] once per `apply`, after the
//! batch is visible, and [`WatchHub::reset`] after a snapshot install. The
//! hub keeps an index of registered watchers: exact keys and prefixes in
//! hash maps (a key finds its prefix watchers by looking up its own
//! prefixes of each length some watched prefix has: few, since a cluster's
//! prefixes come in few shapes, so one per node's assignments costs a
//! lookup per write, not one per node), intervals in a list of distinct
//! selectors (rare). Watchers with the same selector form one group and
//! share one filtered copy of a revision.
//!
//! Each watcher has a [`Slot`]: a bounded queue of its matching revisions,
//! in order. The hub guarantees that every matching revision published
//! after a watcher registered is queued, in order, or that the slot is
//! marked *lagged* (its queue was full, or a snapshot replaced the state);
//! a lagged watcher drops its queue and re-reads history from its `next`.
//! Registration and publishing take the same lock, so a revision is either
//! published before a watcher registers (then it was visible before the
//! watcher's history read) or queued for it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::command::KeySelector;
use crate::model::{Event, RevisionEvents};

/// Watchers with one selector, by registration id.
type Group = HashMap<u64, Arc<Slot>>;

/// Who watches what.
#[derive(Default)]
struct Index {
    next_id: u64,
    watchers: usize,
    /// `KeySelector::Key` watchers by key.
    keys: HashMap<Vec<u8>, Group>,
    /// `KeySelector::Prefix` watchers by prefix.
    prefixes: HashMap<Vec<u8>, Group>,
    /// How many watched prefixes have each length.
    prefix_lengths: BTreeMap<usize, usize>,
    /// Interval watchers, one entry per distinct selector.
    ranges: Vec<(KeySelector, Group)>,
}

/// Routes applied revisions to the watchers they match. One per state
/// machine; shared with its readers.
pub(crate) struct WatchHub {
    /// How many revisions a watcher's queue holds before it is lagged.
    capacity: usize,
    index: Mutex<Index>,
    /// The last revision published (or the revision at open). Stored after
    /// every slot the revision matched has it queued.
    published: AtomicU64,
    deliveries: AtomicU64,
    lags: AtomicU64,
}

/// What the hub has done, for tests and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchHubStats {
    /// Watchers registered now.
    pub watchers: usize,
    /// Distinct keys watched exactly.
    pub keys: usize,
    /// Distinct prefix and interval selectors watched.
    pub ranges: usize,
    /// Revisions queued for a watcher, summed over watchers, since open
    /// (not those dropped by a lag).
    pub deliveries: u64,
    /// Times a watcher's queue overflowed (it re-read history), since open.
    pub lags: u64,
}

impl WatchHub {
    /// A hub whose watcher queues hold `capacity` revisions, over a state
    /// at `revision`.
    pub(crate) fn new(capacity: usize, revision: u64) -> Self {
        WatchHub {
            capacity: capacity.max(1),
            index: Mutex::new(Index::default()),
            published: AtomicU64::new(revision),
            deliveries: AtomicU64::new(0),
            lags: AtomicU64::new(0),
        }
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Register a watcher for `selector`; it is removed when the returned
    /// registration is dropped.
    pub(crate) fn register(self: &Arc<Self>, selector: KeySelector) -> Registration {
        let slot = Arc::new(Slot::default());
        let mut index = self.index();
        let id = index.next_id;
        index.next_id += 1;
        index.watchers += 1;
        let group = match &selector {
            KeySelector::Key(key) => index.keys.entry(key.clone()).or_default(),
            KeySelector::Prefix(prefix) => {
                if !index.prefixes.contains_key(prefix) {
                    *index.prefix_lengths.entry(prefix.len()).or_default() += 1;
                }
                index.prefixes.entry(prefix.clone()).or_default()
            }
            KeySelector::Interval { .. } => {
                match index.ranges.iter().position(|(s, _)| *s == selector) {
                    Some(at) => &mut index.ranges[at].1,
                    None => {
                        index.ranges.push((selector.clone(), Group::new()));
                        &mut index.ranges.last_mut().expect("just pushed").1
                    }
                }
            }
        };
        group.insert(id, slot.clone());
        drop(index);
        Registration {
            hub: self.clone(),
            id,
            selector,
            slot,
        }
    }

    fn deregister(&self, id: u64, selector: &KeySelector) {
        let mut index = self.index();
        let removed = match selector {
            KeySelector::Key(key) => match index.keys.get_mut(key) {
                Some(group) => {
                    let removed = group.remove(&id).is_some();
                    if group.is_empty() {
                        index.keys.remove(key);
                    }
                    removed
                }
                None => false,
            },
            KeySelector::Prefix(prefix) => match index.prefixes.get_mut(prefix) {
                Some(group) => {
                    let removed = group.remove(&id).is_some();
                    if group.is_empty() {
                        index.prefixes.remove(prefix);
                        if let Some(n) = index.prefix_lengths.get_mut(&prefix.len()) {
                            *n -= 1;
                            if *n == 0 {
                                index.prefix_lengths.remove(&prefix.len());
                            }
                        }
                    }
                    removed
                }
                None => false,
            },
            KeySelector::Interval { .. } => {
                match index.ranges.iter().position(|(s, _)| s == selector) {
                    Some(at) => {
                        let removed = index.ranges[at].1.remove(&id).is_some();
                        if index.ranges[at].1.is_empty() {
                            index.ranges.swap_remove(at);
                        }
                        removed
                    }
                    None => false,
                }
            }
        };
        if removed {
            index.watchers -= 1;
        }
    }

    /// Queue each revision (in order) for the watchers it matches, then
    /// wake them. Call once the revisions are visible to readers.
    pub(crate) fn publish(&self, revisions: &[Arc<RevisionEvents>]) {
        let mut wake = Vec::new();
        {
            let index = self.index();
            for events in revisions {
                self.route(&index, events, &mut wake);
                self.published.fetch_max(events.revision, Ordering::Release);
            }
        }
        wake.into_iter().for_each(Waker::wake);
    }

    fn route(&self, index: &Index, events: &Arc<RevisionEvents>, wake: &mut Vec<Waker>) {
        let mut deliver = |group: &Group, matching: &Arc<RevisionEvents>| {
            for slot in group.values() {
                let counter = match slot.push(matching, self.capacity) {
                    Pushed::Queued => &self.deliveries,
                    Pushed::Lagged => &self.lags,
                    Pushed::AlreadyLagged => continue,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                wake.extend(slot.take_waker());
            }
        };
        // The events of each watched key and prefix, in the revision's order.
        let mut hits: HashMap<(bool, &[u8]), Vec<&Event>> = HashMap::new();
        for event in &events.events {
            let key = event.kv.key.as_slice();
            if index.keys.contains_key(key) {
                hits.entry((false, key)).or_default().push(event);
            }
            for &length in index.prefix_lengths.keys() {
                let Some(prefix) = key.get(..length) else {
                    break;
                };
                if index.prefixes.contains_key(prefix) {
                    hits.entry((true, prefix)).or_default().push(event);
                }
            }
        }
        for ((is_prefix, selected_by), selected) in hits {
            let matching = if selected.len() == events.events.len() {
                events.clone()
            } else {
                Arc::new(RevisionEvents {
                    revision: events.revision,
                    events: selected.into_iter().cloned().collect(),
                })
            };
            let group = match is_prefix {
                true => &index.prefixes[selected_by],
                false => &index.keys[selected_by],
            };
            deliver(group, &matching);
        }
        for (selector, group) in &index.ranges {
            if let Some(matching) = restricted(events, selector) {
                deliver(group, &matching);
            }
        }
    }

    /// The state was replaced by a snapshot at `revision`: every watcher
    /// re-reads history.
    pub(crate) fn reset(&self, revision: u64) {
        let mut wake = Vec::new();
        {
            let index = self.index();
            let groups = index
                .keys
                .values()
                .chain(index.prefixes.values())
                .chain(index.ranges.iter().map(|(_, g)| g));
            for slot in groups.flat_map(Group::values) {
                slot.lag();
                wake.extend(slot.take_waker());
            }
            self.published.fetch_max(revision, Ordering::Release);
        }
        wake.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn stats(&self) -> WatchHubStats {
        let index = self.index();
        WatchHubStats {
            watchers: index.watchers,
            keys: index.keys.len(),
            ranges: index.prefixes.len() + index.ranges.len(),
            deliveries: self.deliveries.load(Ordering::Relaxed),
            lags: self.lags.load(Ordering::Relaxed),
        }
    }
}

/// `events` restricted to `selector`: shared when every event matches,
/// `None` when none does.
fn restricted(events: &Arc<RevisionEvents>, selector: &KeySelector) -> Option<Arc<RevisionEvents>> {
    if events.events.iter().all(|e| selector.matches(&e.kv.key)) {
        return Some(events.clone());
    }
    events.filtered(selector).map(Arc::new)
}

/// One watcher's queue of matching revisions.
#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    queue: VecDeque<Arc<RevisionEvents>>,
    /// Revisions were dropped since the watcher last took: it must re-read
    /// history. The queue is empty while set.
    lagged: bool,
    waker: Option<Waker>,
}

/// What pushing a revision into a slot did.
enum Pushed {
    Queued,
    /// The queue was full: dropped, and the slot is lagged now.
    Lagged,
    /// Dropped: the watcher re-reads history anyway.
    AlreadyLagged,
}

/// What a watcher takes from its slot.
#[derive(Debug)]
pub(crate) enum Take {
    /// The next matching revision (possibly one it already read from
    /// history: skip those below its `next`).
    Events(Arc<RevisionEvents>),
    /// Revisions were dropped: re-read history from `next`. Revisions
    /// published from now on are queued again.
    Lagged,
}

impl Slot {
    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queue `events`, or mark the slot lagged when the queue is full.
    fn push(&self, events: &Arc<RevisionEvents>, capacity: usize) -> Pushed {
        let mut state = self.state();
        if state.lagged {
            return Pushed::AlreadyLagged;
        }
        if state.queue.len() >= capacity {
            state.queue.clear();
            state.lagged = true;
            return Pushed::Lagged;
        }
        state.queue.push_back(events.clone());
        Pushed::Queued
    }

    fn lag(&self) {
        let mut state = self.state();
        state.queue.clear();
        state.lagged = true;
    }

    fn take_waker(&self) -> Option<Waker> {
        self.state().waker.take()
    }

    /// Take the next revision or the lag, or remember `cx`'s waker.
    /// Removes nothing unless it returns `Ready`.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Take> {
        let mut state = self.state();
        if state.lagged {
            state.lagged = false;
            return Poll::Ready(Take::Lagged);
        }
        if let Some(events) = state.queue.pop_front() {
            return Poll::Ready(Take::Events(events));
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Nothing queued and not lagged.
    fn idle(&self) -> bool {
        let state = self.state();
        !state.lagged && state.queue.is_empty()
    }
}

/// A watcher's place in the hub; dropping it removes the watcher.
pub(crate) struct Registration {
    hub: Arc<WatchHub>,
    id: u64,
    selector: KeySelector,
    slot: Arc<Slot>,
}

impl Registration {
    pub(crate) fn selector(&self) -> &KeySelector {
        &self.selector
    }

    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Take> {
        self.slot.poll_take(cx)
    }

    /// A revision through which every matching revision published since
    /// registration has been taken from the slot, or `None` while some
    /// are queued or dropped.
    pub(crate) fn taken_through(&self) -> Option<u64> {
        // Load first: every revision up to `published` is already queued.
        let published = self.hub.published.load(Ordering::Acquire);
        self.slot.idle().then_some(published)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.deregister(self.id, &self.selector);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;
    use crate::model::{EventKind, KeyValue};

    fn event(key: &str, revision: u64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: key.as_bytes().to_vec(),
                value: b"v".to_vec(),
                create_revision: revision,
                mod_revision: revision,
                version: 1,
                lease: None,
            },
            prev_kv: None,
        }
    }

    fn revision(revision: u64, keys: &[&str]) -> Arc<RevisionEvents> {
        Arc::new(RevisionEvents {
            revision,
            events: keys.iter().map(|k| event(k, revision)).collect(),
        })
    }

    fn key(k: &str) -> KeySelector {
        KeySelector::Key(k.as_bytes().to_vec())
    }

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    /// Poll once with `wakes` as the waker.
    fn poll(registration: &Registration, wakes: &Arc<Wakes>) -> Poll<Take> {
        let waker = Waker::from(wakes.clone());
        registration.poll_take(&mut Context::from_waker(&waker))
    }

    /// Everything queued: revisions and the keys of their events, or
    /// `None` for a lag.
    fn drain(registration: &Registration) -> Vec<Option<(u64, Vec<String>)>> {
        let wakes = Arc::new(Wakes::default());
        let mut taken = Vec::new();
        while let Poll::Ready(take) = poll(registration, &wakes) {
            taken.push(match take {
                Take::Events(e) => Some((
                    e.revision,
                    e.events
                        .iter()
                        .map(|e| String::from_utf8(e.kv.key.clone()).unwrap())
                        .collect(),
                )),
                Take::Lagged => None,
            });
        }
        taken
    }

    fn revs(taken: Vec<Option<(u64, Vec<String>)>>) -> Vec<u64> {
        taken.into_iter().map(|t| t.expect("no lag").0).collect()
    }

    #[test]
    fn only_matching_watchers_are_queued_and_woken() {
        let hub = Arc::new(WatchHub::new(16, 0));
        let a = hub.register(key("a"));
        let b = hub.register(key("b"));
        let (wakes_a, wakes_b) = (Arc::new(Wakes::default()), Arc::new(Wakes::default()));
        assert!(poll(&a, &wakes_a).is_pending());
        assert!(poll(&b, &wakes_b).is_pending());
        for r in 1..=100 {
            hub.publish(&[revision(r, &["b"])]);
            // B takes each one and waits again; A is never touched.
            assert!(matches!(poll(&b, &wakes_b), Poll::Ready(Take::Events(e)) if e.revision == r));
            assert!(poll(&b, &wakes_b).is_pending());
        }
        assert_eq!(wakes_a.count(), 0, "a is never woken");
        assert_eq!(wakes_b.count(), 100);
        assert!(poll(&a, &wakes_a).is_pending());
        assert_eq!(hub.stats().deliveries, 100, "only b's revisions");
        hub.publish(&[revision(101, &["b", "a", "c"])]);
        assert_eq!(wakes_a.count(), 1);
        assert_eq!(drain(&a), [Some((101, vec!["a".to_string()]))]);
        assert_eq!(hub.stats().deliveries, 102);
    }

    #[test]
    fn prefix_and_interval_selectors_get_their_events_in_order() {
        let hub = Arc::new(WatchHub::new(16, 0));
        let prefix = hub.register(KeySelector::Prefix(b"p/".to_vec()));
        let everything = hub.register(KeySelector::Prefix(Vec::new()));
        let interval = hub.register(KeySelector::Interval {
            start: b"m".to_vec(),
            end: Some(b"o".to_vec()),
        });
        let open_ended = hub.register(KeySelector::Interval {
            start: b"x".to_vec(),
            end: None,
        });
        hub.publish(&[
            revision(1, &["p/1", "q", "n"]),
            revision(2, &["o", "zz"]),
            revision(3, &["m", "p/2", "p"]),
        ]);
        assert_eq!(
            drain(&prefix),
            [
                Some((1, vec!["p/1".to_string()])),
                Some((3, vec!["p/2".to_string()]))
            ]
        );
        assert_eq!(revs(drain(&everything)), [1, 2, 3]);
        assert_eq!(
            drain(&interval),
            [
                Some((1, vec!["n".to_string()])),
                Some((3, vec!["m".to_string()]))
            ]
        );
        assert_eq!(drain(&open_ended), [Some((2, vec!["zz".to_string()]))]);
        assert_eq!(hub.stats().ranges, 4);
    }

    #[test]
    fn distinct_and_nested_prefixes_get_only_their_keys() {
        let hub = Arc::new(WatchHub::new(16, 0));
        // One prefix per node, as the nodes' assignment watches are, and a
        // prefix nested in one of them.
        let nodes: Vec<_> = (0..200)
            .map(|i| hub.register(KeySelector::Prefix(format!("assign/{i:03}/").into_bytes())))
            .collect();
        let nested = hub.register(KeySelector::Prefix(b"assign/007/x".to_vec()));
        let shorter = hub.register(KeySelector::Prefix(b"assign/".to_vec()));
        hub.publish(&[
            revision(1, &["assign/007/x1", "assign/042/y", "other"]),
            revision(2, &["assign/007/y"]),
            revision(3, &["assign/00"]),
        ]);
        assert_eq!(
            drain(&nodes[7]),
            [
                Some((1, vec!["assign/007/x1".to_string()])),
                Some((2, vec!["assign/007/y".to_string()]))
            ]
        );
        assert_eq!(
            drain(&nodes[42]),
            [Some((1, vec!["assign/042/y".to_string()]))]
        );
        assert_eq!(
            drain(&nested),
            [Some((1, vec!["assign/007/x1".to_string()]))]
        );
        assert_eq!(revs(drain(&shorter)), [1, 2, 3]);
        // Nobody else was queued anything.
        assert_eq!(hub.stats().deliveries, 2 + 1 + 1 + 3);
        assert!(nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| ![7, 42].contains(i))
            .all(|(_, w)| drain(w).is_empty()));
        // Dropping every watcher of a length forgets the length.
        drop(nodes);
        drop(nested);
        assert_eq!(hub.stats().ranges, 1);
        hub.publish(&[revision(4, &["assign/007/z"])]);
        assert_eq!(revs(drain(&shorter)), [4]);
        assert_eq!(hub.index().prefix_lengths.len(), 1);
    }

    #[test]
    fn many_watchers_on_one_key_each_get_it_sharing_one_copy() {
        let hub = Arc::new(WatchHub::new(16, 0));
        let watchers: Vec<_> = (0..50).map(|_| hub.register(key("k"))).collect();
        let other = hub.register(key("other"));
        hub.publish(&[revision(1, &["k"]), revision(2, &["other", "k"])]);
        let mut copies = Vec::new();
        for w in &watchers {
            let waker = Waker::from(Arc::new(Wakes::default()));
            let mut cx = Context::from_waker(&waker);
            let Poll::Ready(Take::Events(first)) = w.poll_take(&mut cx) else {
                panic!("revision 1 queued");
            };
            assert_eq!(first.revision, 1);
            let Poll::Ready(Take::Events(second)) = w.poll_take(&mut cx) else {
                panic!("revision 2 queued");
            };
            assert_eq!((second.revision, second.events.len()), (2, 1));
            copies.push(second);
        }
        assert_eq!(copies.len(), 50);
        assert!(copies.iter().all(|c| Arc::ptr_eq(c, &copies[0])));
        assert_eq!(drain(&other), [Some((2, vec!["other".to_string()]))]);
        let stats = hub.stats();
        assert_eq!((stats.watchers, stats.keys, stats.deliveries), (51, 2, 101));
    }

    #[test]
    fn a_full_queue_lags_until_taken_then_queues_again() {
        let hub = Arc::new(WatchHub::new(3, 0));
        let w = hub.register(key("k"));
        for r in 1..=3 {
            hub.publish(&[revision(r, &["k"])]);
        }
        assert_eq!(hub.stats().lags, 0);
        hub.publish(&[revision(4, &["k"])]);
        hub.publish(&[revision(5, &["k"])]);
        let stats = hub.stats();
        assert_eq!(stats.lags, 1, "one lag, not one per dropped revision");
        assert_eq!(stats.deliveries, 3, "only the queued ones");
        assert_eq!(w.taken_through(), None);
        // The lag, once; then nothing until the next revision.
        assert_eq!(drain(&w), [None]);
        hub.publish(&[revision(6, &["k"])]);
        assert_eq!(revs(drain(&w)), [6]);
        assert_eq!(w.taken_through(), Some(6));
    }

    #[test]
    fn a_reset_lags_every_watcher() {
        let hub = Arc::new(WatchHub::new(16, 0));
        let watchers = [
            hub.register(key("a")),
            hub.register(key("b")),
            hub.register(KeySelector::Prefix(Vec::new())),
        ];
        hub.publish(&[revision(1, &["a"])]);
        let wakes: Vec<_> = watchers
            .iter()
            .map(|w| {
                let wakes = Arc::new(Wakes::default());
                while poll(w, &wakes).is_ready() {}
                wakes
            })
            .collect();
        hub.publish(&[revision(2, &["a"])]);
        hub.reset(10);
        for (w, wakes) in watchers.iter().zip(&wakes) {
            assert!(wakes.count() >= 1, "woken by the reset");
            assert_eq!(drain(w), [None], "queue dropped, lagged");
        }
        assert_eq!(watchers[1].taken_through(), Some(10));
    }

    #[test]
    fn dropped_watchers_leave_the_index() {
        let hub = Arc::new(WatchHub::new(16, 0));
        let watchers: Vec<_> = (0..1000)
            .map(|i| match i % 4 {
                0 => hub.register(key(&format!("k{}", i % 10))),
                1 => hub.register(key(&format!("k{i}"))),
                2 => hub.register(KeySelector::Prefix(format!("p{}", i % 3).into_bytes())),
                _ => hub.register(KeySelector::Interval {
                    start: b"a".to_vec(),
                    end: None,
                }),
            })
            .collect();
        let stats = hub.stats();
        assert_eq!((stats.watchers, stats.ranges), (1000, 4));
        assert_eq!(stats.keys, 5 + 250);
        drop(watchers);
        let stats = hub.stats();
        assert_eq!((stats.watchers, stats.keys, stats.ranges), (0, 0, 0));
        hub.publish(&[revision(1, &["k0", "p0", "b"])]);
        assert_eq!(hub.stats().deliveries, 0);
    }
}
