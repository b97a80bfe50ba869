//! The lost-write check: what each key's final read shows of the
//! acknowledged writes before it.

use std::collections::BTreeMap;

use crate::linearizability::{KvHistory, KvInput, KvOutput, Operation};

/// An operation of a [`KvHistory`].
type KvOperation = Operation<KvInput, KvOutput>;

/// A write that acknowledged or may have taken effect.
struct Write<'a> {
    /// Its index in the history.
    index: usize,
    /// The operation.
    op: &'a KvOperation,
    /// The value it wrote (`None`: a delete).
    value: Option<&'a [u8]>,
    /// True if acknowledged, false if its outcome is unknown.
    acked: bool,
}

impl Write<'_> {
    /// True if it returned, known, before `later` was called: whatever
    /// `later` wrote must then come after it.
    fn happened_before(&self, later: &Write<'_>) -> bool {
        self.op.output.is_some() && self.op.ret.is_some_and(|ret| later.op.call > ret)
    }

    /// For a person: `put #3 of "v" (call 10, ret 20)`.
    fn describe(&self) -> String {
        let kind = match self.op.input {
            KvInput::Put { .. } => "put",
            KvInput::Cas { .. } => "cas",
            KvInput::Delete { .. } => "delete",
            KvInput::Get { .. } => "get",
        };
        let ret = self.op.ret.map_or("none".to_string(), |r| r.to_string());
        let outcome = if self.acked {
            "acknowledged"
        } else {
            "outcome unknown"
        };
        format!(
            "{kind} #{} of {} (call {}, ret {ret}, {outcome})",
            self.index,
            show(self.value),
            self.op.call
        )
    }
}

/// Acknowledged writes the final reads show lost, described.
///
/// Per key, the final read is the known [`KvInput::Get`] called after
/// every other operation on the key that returned (the latest such call);
/// keys without one get no verdict. Its value must be explained by a write
/// of that value (a put, a swapped CAS, or for absence a delete or the
/// initial state), acknowledged or of unknown outcome, that no
/// acknowledged write of another value came strictly after (called after
/// it returned). Otherwise the key is reported: its value was written by
/// nobody, or an acknowledged write after the explaining one was lost.
/// Writes are assumed to write unique values, as the workload's do.
pub fn lost_writes(history: &KvHistory) -> Vec<String> {
    let mut by_key: BTreeMap<&[u8], Vec<(usize, &KvOperation)>> = BTreeMap::new();
    for (index, op) in history.operations().iter().enumerate() {
        by_key.entry(op.input.key()).or_default().push((index, op));
    }
    by_key
        .into_iter()
        .filter_map(|(key, ops)| check_key(key, &ops))
        .collect()
}

/// The verdict on one key's operations, if something was lost.
fn check_key(key: &[u8], ops: &[(usize, &KvOperation)]) -> Option<String> {
    let (read_index, read, value) = final_read(ops)?;
    let writes: Vec<Write<'_>> = ops
        .iter()
        .filter_map(|&(index, op)| as_write(index, op))
        .collect();
    let acked: Vec<&Write<'_>> = writes
        .iter()
        .filter(|w| w.acked && w.value != value)
        .collect();
    // Writes of the final value that could have produced it (not called
    // after the read returned).
    let explainers: Vec<&Write<'_>> = writes
        .iter()
        .filter(|w| w.value == value && w.op.call <= read.ret.unwrap_or(u64::MAX))
        .collect();
    let overtaken_by = |w: &Write<'_>| {
        acked
            .iter()
            .copied()
            .filter(|a| w.happened_before(a))
            .max_by_key(|a| a.op.call)
    };
    if explainers.iter().any(|w| overtaken_by(w).is_none()) {
        return None;
    }
    // The initial state (absent) explains an absent value unless some
    // acknowledged write (necessarily of a value) exists.
    if value.is_none() && acked.is_empty() {
        return None;
    }
    let head = format!(
        "key {}: final read #{read_index} (call {}) found {}",
        show(Some(key)),
        read.call,
        show(value)
    );
    let latest_acked = acked.iter().copied().max_by_key(|a| a.op.call);
    let verdict = match (explainers.iter().max_by_key(|w| w.op.ret), value) {
        (Some(writer), _) => {
            let lost = overtaken_by(writer).expect("every explainer is overtaken");
            let more = acked.iter().filter(|a| writer.happened_before(a)).count() - 1;
            let more = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            format!(
                "{head}, written by {}; {} came after it and was lost{more}",
                writer.describe(),
                lost.describe()
            )
        }
        (None, Some(_)) => format!("{head}: final value written by nobody"),
        (None, None) => format!(
            "{head}, though {} acknowledged write(s) came before it, e.g. {}",
            acked.len(),
            latest_acked
                .expect("an acknowledged write exists")
                .describe()
        ),
    };
    Some(verdict)
}

/// The key's final read: its index, the operation and the value read.
fn final_read<'a>(
    ops: &[(usize, &'a KvOperation)],
) -> Option<(usize, &'a KvOperation, Option<&'a [u8]>)> {
    ops.iter()
        .filter_map(|&(index, op)| match (&op.input, &op.output) {
            (KvInput::Get { .. }, Some(KvOutput::Value(v))) => Some((index, op, v.as_deref())),
            _ => None,
        })
        .filter(|&(index, op, _)| {
            ops.iter()
                .filter(|&&(other, _)| other != index)
                .all(|(_, other)| other.ret.is_none_or(|ret| op.call >= ret))
        })
        .max_by_key(|&(index, op, _)| (op.call, index))
}

/// `op` as a write, if it wrote or may have (acknowledged or unknown).
fn as_write(index: usize, op: &KvOperation) -> Option<Write<'_>> {
    let value = match &op.input {
        KvInput::Put { value, .. } => Some(value.as_slice()),
        KvInput::Cas { new, .. } => Some(new.as_slice()),
        KvInput::Delete { .. } => None,
        KvInput::Get { .. } => return None,
    };
    let acked = match (&op.input, &op.output) {
        (_, None) => false,
        (KvInput::Put { .. } | KvInput::Delete { .. }, Some(KvOutput::Ok)) => true,
        (KvInput::Cas { .. }, Some(KvOutput::Swapped(true))) => true,
        _ => return None,
    };
    Some(Write {
        index,
        op,
        value,
        acked,
    })
}

/// A value for a person: quoted lossy UTF-8 (cut at 64 characters), or
/// `absent`.
fn show(value: Option<&[u8]>) -> String {
    match value {
        None => "absent".to_string(),
        Some(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let cut: String = text.chars().take(64).collect();
            let ellipsis = if cut.len() < text.len() { "…" } else { "" };
            format!("{cut:?}{ellipsis}")
        }
    }
}
