//! Term fencing for controllers (the cluster scheduler here, the serve
//! controller above): a controller claims a key with the Raft term in which
//! its node's GCS member became leader, and every write it makes compares
//! that key with its claim, so a deposed controller's writes never land.

use troupe_core::id::NodeId;
use troupe_gcs::client::GcsClient;
use troupe_gcs::{
    Compare, CompareOp, CompareTarget, Operation, Outcome, PutRequest, TxnOp, TxnRequest,
};

use crate::schema::{self, ControllerTermRecord};

/// A held claim.
#[derive(Debug, Clone)]
pub struct TermClaim {
    /// The encoded [`ControllerTermRecord`] that fenced writes compare.
    pub value: Vec<u8>,
    /// The GCS revision of the claim: decide only on a view at least this
    /// new.
    pub revision: u64,
}

/// Claims `key` for `term` on behalf of `node`; `None` if a later term (or
/// another node in the same term) holds it.
pub async fn claim_term(
    gcs: &GcsClient,
    key: &[u8],
    term: u64,
    node: NodeId,
) -> Result<Option<TermClaim>, String> {
    let key = key.to_vec();
    let current = gcs.get(key.clone()).await.map_err(|e| e.to_string())?;
    let compare = match &current {
        Some(kv) => {
            let held: ControllerTermRecord =
                schema::decode(&kv.value).map_err(|e| e.to_string())?;
            if held.term > term || (held.term == term && held.node != node) {
                return Ok(None);
            }
            Compare {
                key: key.clone(),
                op: CompareOp::Equal,
                target: CompareTarget::ModRevision(kv.mod_revision),
            }
        }
        None => Compare::absent(key.clone()),
    };
    let value = schema::encode(&ControllerTermRecord { term, node });
    let txn = TxnRequest {
        compares: vec![compare],
        success: vec![TxnOp::Put(PutRequest::new(key, value.clone()))],
        failure: vec![],
    };
    let response = gcs
        .write(Operation::Txn(txn))
        .await
        .map_err(|e| e.to_string())?;
    match response.outcome {
        Ok(Outcome::Txn(t)) if t.succeeded => Ok(Some(TermClaim {
            value,
            revision: response.revision,
        })),
        Ok(_) => Err("the term key changed while claiming it".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Commits `ops` only if `key` still holds `claim`: `Ok(Some(revision))`,
/// or `Ok(None)` if another controller took over.
pub async fn commit_fenced(
    gcs: &GcsClient,
    key: &[u8],
    claim: &[u8],
    ops: Vec<TxnOp>,
) -> Result<Option<u64>, String> {
    let txn = TxnRequest {
        compares: vec![Compare {
            key: key.to_vec(),
            op: CompareOp::Equal,
            target: CompareTarget::Value(claim.to_vec()),
        }],
        success: ops,
        failure: vec![],
    };
    let response = gcs
        .write(Operation::Txn(txn))
        .await
        .map_err(|e| e.to_string())?;
    match response.outcome {
        Ok(Outcome::Txn(t)) if t.succeeded => Ok(Some(response.revision)),
        Ok(Outcome::Txn(_)) => Ok(None),
        Ok(other) => Err(format!("unexpected answer to a transaction: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}
