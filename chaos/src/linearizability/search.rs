//! The Wing–Gong / Lowe search over one partition, after Porcupine's
//! `checkSingle`: a DFS over call and return events sorted by time that
//! linearizes a pending call or, at a return whose operation is still
//! pending, backtracks; explored (linearized set, model state) pairs are
//! cached so no configuration is searched twice.
//!
//! Two refinements, both sound, prune the search for illegal histories,
//! which must be explored exhaustively:
//! - A read-only operation (see [`Model::is_read_only`]) that can be
//!   linearized now may as well be: it changes no state, and every
//!   operation that must precede it already has. If that fails, so does
//!   the configuration, without trying the other candidates.
//! - Operations with unknown outcomes are optional ("never" is "last"), so
//!   the cache keeps which of them were linearized apart from the rest: a
//!   configuration is pruned if a failed one had the same completed set and
//!   state and a *subset* of its unknown operations, since having more of
//!   them still available can only help.

use std::collections::HashMap;
use std::time::Instant;

use super::bitset::Bitset;
use super::history::Operation;
use super::model::Model;

/// End of the event list.
const NIL: usize = usize::MAX;
/// The sentinel node in front of the event list.
const HEAD: usize = 0;
/// How often (in steps) the search looks at the clock.
const CLOCK_EVERY: u64 = 4096;

/// Limits on one partition's search.
pub(crate) struct Budget {
    pub(crate) max_steps: u64,
    pub(crate) deadline: Option<Instant>,
}

/// Why a partition is not linearizable: the deepest point the search reached.
pub(crate) struct Failure<S> {
    /// Operations (local ids) of the longest linearizable prefix, in order.
    pub(crate) prefix: Vec<usize>,
    /// The operation whose return came before it could be linearized.
    pub(crate) blocking: usize,
    /// Other pending operations that were tried after the prefix.
    pub(crate) concurrent: Vec<usize>,
    /// The model state after the prefix.
    pub(crate) state: S,
}

/// What the search concluded.
pub(crate) enum Outcome<S> {
    Linearizable,
    Illegal(Failure<S>),
    Exhausted { steps: u64 },
}

/// The doubly linked list of call and return events; node `HEAD` is a
/// sentinel.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation (local id) each node belongs to.
    op: Vec<usize>,
    /// For a call node, its return node; `NIL` for a return node.
    partner: Vec<usize>,
}

impl Events {
    /// Sorts the events by time, calls before returns at equal
    /// times (so operations that touch are concurrent).
    fn new<I, O>(ops: &[&Operation<I, O>]) -> Self {
        let mut events: Vec<(u128, bool, usize)> = Vec::with_capacity(2 * ops.len());
        for (id, op) in ops.iter().enumerate() {
            let ret = op.effective_ret().map_or(u128::MAX, u128::from);
            events.push((u128::from(op.call), false, id));
            events.push((ret, true, id));
        }
        events.sort_unstable();
        let nodes = events.len() + 1;
        let mut list = Self {
            next: (1..=nodes).collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![NIL; nodes],
            partner: vec![NIL; nodes],
        };
        list.next[nodes - 1] = NIL;
        let mut call_node = vec![NIL; ops.len()];
        for (index, &(_, is_return, id)) in events.iter().enumerate() {
            let node = index + 1;
            list.op[node] = id;
            if is_return {
                list.partner[call_node[id]] = node;
            } else {
                call_node[id] = node;
            }
        }
        list
    }

    fn is_call(&self, node: usize) -> bool {
        self.partner[node] != NIL
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Removes a call node and its return node.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.partner[call]);
    }

    /// Undoes [`Events::lift`].
    fn unlift(&mut self, call: usize) {
        self.relink(self.partner[call]);
        self.relink(call);
    }
}

/// One linearized operation on the DFS stack.
struct Frame<S> {
    /// Its call node.
    call: usize,
    /// The state before it.
    before: S,
    /// It was a read-only operation that could be linearized, so the
    /// configuration below it fails when it does.
    forced: bool,
}

/// The search state of one partition.
struct Dfs<'a, M: Model> {
    ops: &'a [&'a Operation<M::Input, M::Output>],
    list: Events,
    /// For an unknown-outcome operation, its index in `taken`.
    slot: Vec<usize>,
    /// Linearized operations with known outcomes.
    done: Bitset,
    /// Linearized operations with unknown outcomes, by slot.
    taken: Bitset,
    /// Known outcomes still to linearize; the search succeeds at zero.
    remaining: usize,
    /// Failed configurations: per (done, state), minimal `taken` sets.
    failed: HashMap<(Bitset, M::State), Vec<Bitset>>,
    stack: Vec<Frame<M::State>>,
    state: M::State,
    deepest: Option<Failure<M::State>>,
}

/// Searches for a linearization of `ops`, all in one partition.
pub(crate) fn search<M: Model>(
    ops: &[&Operation<M::Input, M::Output>],
    budget: &Budget,
) -> Outcome<M::State> {
    let mut slot = vec![NIL; ops.len()];
    let mut unknown = 0;
    for (id, op) in ops.iter().enumerate() {
        if op.is_unknown() {
            slot[id] = unknown;
            unknown += 1;
        }
    }
    let mut dfs = Dfs::<M> {
        ops,
        list: Events::new(ops),
        slot,
        done: Bitset::new(ops.len()),
        taken: Bitset::new(unknown),
        remaining: ops.len() - unknown,
        failed: HashMap::new(),
        stack: Vec::new(),
        state: M::init(),
        deepest: None,
    };
    dfs.run(budget)
}

impl<M: Model> Dfs<'_, M> {
    fn run(&mut self, budget: &Budget) -> Outcome<M::State> {
        let mut entry = self.list.next[HEAD];
        let mut steps: u64 = 0;
        while self.remaining > 0 {
            steps += 1;
            if steps > budget.max_steps
                || (steps.is_multiple_of(CLOCK_EVERY)
                    && budget.deadline.is_some_and(|d| Instant::now() >= d))
            {
                return Outcome::Exhausted { steps };
            }
            let id = self.list.op[entry];
            let op = self.ops[id];
            let next_entry = if self.list.is_call(entry) {
                let next = match &op.output {
                    Some(output) => M::step(&self.state, &op.input, output),
                    None => Some(M::step_unknown(&self.state, &op.input)),
                };
                let forced = next.is_some() && M::is_read_only(&op.input);
                match next.and_then(|next| self.admit(id, next)) {
                    Some(next) => {
                        self.push(entry, next, forced);
                        Some(self.list.next[HEAD])
                    }
                    None if forced => self.backtrack(),
                    None => Some(self.list.next[entry]),
                }
            } else if op.is_unknown() {
                // Unknown outcomes never have to be linearized.
                Some(self.list.next[entry])
            } else {
                let depth = self.stack.len();
                if self.deepest.as_ref().is_none_or(|d| depth > d.prefix.len()) {
                    self.deepest = Some(self.failure_at(entry));
                }
                self.backtrack()
            };
            match next_entry {
                Some(next_entry) => entry = next_entry,
                None => {
                    let failure = self.deepest.take().expect("failing needs a return");
                    return Outcome::Illegal(failure);
                }
            }
        }
        Outcome::Linearizable
    }

    /// Marks operation `id` linearized and returns `next` if the resulting
    /// configuration is not dominated by a failed one; else undoes the mark.
    fn admit(&mut self, id: usize, next: M::State) -> Option<M::State> {
        self.mark(id, true);
        let key = (self.done.clone(), next);
        let dominated = self
            .failed
            .get(&key)
            .is_some_and(|sets| sets.iter().any(|set| set.is_subset_of(&self.taken)));
        if dominated {
            self.mark(id, false);
            return None;
        }
        Some(key.1)
    }

    fn mark(&mut self, id: usize, linearized: bool) {
        let (set, bit) = match self.slot[id] {
            NIL => (&mut self.done, id),
            slot => (&mut self.taken, slot),
        };
        if linearized {
            set.set(bit);
        } else {
            set.clear(bit);
        }
        if self.slot[id] == NIL {
            if linearized {
                self.remaining -= 1;
            } else {
                self.remaining += 1;
            }
        }
    }

    fn push(&mut self, call: usize, next: M::State, forced: bool) {
        let before = std::mem::replace(&mut self.state, next);
        self.stack.push(Frame {
            call,
            before,
            forced,
        });
        self.list.lift(call);
    }

    /// Records the current configuration as failed and undoes linearizations
    /// until one leaves other candidates to try; returns where to resume,
    /// or `None` if the root failed.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let sets = self
                .failed
                .entry((self.done.clone(), self.state.clone()))
                .or_default();
            // Keep only the minimal sets: a superset prunes nothing more.
            sets.retain(|set| !self.taken.is_subset_of(set));
            sets.push(self.taken.clone());
            let frame = self.stack.pop()?;
            self.state = frame.before;
            self.mark(self.list.op[frame.call], false);
            self.list.unlift(frame.call);
            if !frame.forced {
                return Some(self.list.next[frame.call]);
            }
        }
    }

    /// Describes the search stuck at return node `blocking`.
    fn failure_at(&self, blocking: usize) -> Failure<M::State> {
        let list = &self.list;
        let blocking_op = list.op[blocking];
        let mut concurrent = Vec::new();
        let mut node = list.next[HEAD];
        while node != blocking && node != NIL {
            if list.is_call(node) && list.op[node] != blocking_op {
                concurrent.push(list.op[node]);
            }
            node = list.next[node];
        }
        Failure {
            prefix: self.stack.iter().map(|frame| list.op[frame.call]).collect(),
            blocking: blocking_op,
            concurrent,
            state: self.state.clone(),
        }
    }
}
