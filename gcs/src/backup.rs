//! Backups of the control store: `troupe gcs snapshot save FILE` and
//! `troupe gcs snapshot restore FILE --data-dir DIR` (etcd's
//! `etcdctl snapshot save/restore`).
//!
//! - [`fetch`] asks the leader for a copy of its state machine at a
//!   linearizable read point (the [`Backup`](crate::api::Backup) stream, in
//!   chunks under the RPC message limit); [`save`] writes it atomically.
//! - A backup file is, integers little-endian:
//!   `MAGIC (16 bytes) | format u32 | body length u64 | body | crc32 u32`,
//!   the body being an encoded [`SnapshotPayload`] and the CRC-32 (IEEE)
//!   covering every byte before it. [`encode_file`] / [`decode_file`] are
//!   pure.
//! - [`restore`] makes a fresh member directory holding that state as a
//!   NEW cluster whose only voter is the given id: the old membership is
//!   not kept (as etcd's restore does); other members join it afterwards.
//!   Its log starts empty, the state sits in a snapshot at log index 0 (as
//!   if the cluster had been initialized and compacted), so new members
//!   receive it as a snapshot. Its Raft term starts after the last term of
//!   the backed-up cluster: whatever the state fences by term (the cluster
//!   controller's claim) is taken over by the new cluster's leader.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, LogId, StoredMembership};

use crate::api::{Backup, BackupChunk, BackupRequest, BACKUP_MAX_CHUNK};
use crate::client::GcsClient;
use crate::store::{self, SnapshotPayload, StoreConfig};
use crate::types::{NodeId, SnapshotMeta};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"troupe-gcs-bkup\n";
/// The backup file layout this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;
const HEADER_LEN: usize = 16 + 4 + 8;
const TRAILER_LEN: usize = 4;

/// Why a backup could not be taken or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {detail}")]
    Io { path: PathBuf, detail: String },
    /// The file is not a backup this build reads, or was damaged.
    #[error("{path} is not a usable backup: {detail}")]
    BadFile { path: PathBuf, detail: String },
    /// The cluster did not hand over a snapshot.
    #[error("could not take a snapshot of the control store: {0}")]
    Fetch(String),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// The bytes of a backup file holding `body`. Pure.
pub fn encode_file(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&BACKUP_FORMAT.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The body of a backup file, after checking its magic, format, length and
/// checksum; the error says which. Pure.
pub fn decode_file(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN || &bytes[..16] != MAGIC {
        return Err(format!(
            "it does not start like a Troupe GCS backup ({} bytes; a backup starts with {:?})",
            bytes.len(),
            String::from_utf8_lossy(MAGIC).trim_end()
        ));
    }
    let format = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    if format != BACKUP_FORMAT {
        return Err(format!(
            "backup format {format}; this build reads format {BACKUP_FORMAT}: restore it with \
             the Troupe version that saved it"
        ));
    }
    let len = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let expected = (HEADER_LEN + TRAILER_LEN) as u64 + len;
    if bytes.len() as u64 != expected {
        return Err(format!(
            "the file has {} bytes but its header announces {expected}: it is truncated or was \
             appended to",
            bytes.len()
        ));
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    let actual = crc32fast::hash(covered);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored crc32 {stored:08x}, computed {actual:08x}): the file is \
             damaged; use another copy of the backup"
        ));
    }
    Ok(&covered[HEADER_LEN..])
}

/// A snapshot fetched from the cluster.
#[derive(Debug)]
pub struct Fetched {
    /// The member that served it (the leader).
    pub member: NodeId,
    /// The KV revision it holds.
    pub revision: u64,
    /// The encoded [`SnapshotPayload`].
    pub body: Vec<u8>,
}

/// Asks the leader (found through `client`) for a snapshot of its state at
/// a linearizable read point; retries (the leader may change, a connection
/// may drop while a large snapshot is built) until `timeout` has passed.
pub async fn fetch(client: &GcsClient, timeout: Duration) -> Result<Fetched, BackupError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt made");
    while Instant::now() < deadline {
        let status = client
            .status()
            .await
            .map_err(|e| BackupError::Fetch(e.to_string()))?;
        let leader = status.leader.and_then(|l| {
            status
                .membership
                .voters
                .iter()
                .find(|(id, _)| *id == l)
                .map(|(_, a)| a.clone())
        });
        match leader {
            Some(addr) => match fetch_from(client, &addr, false).await {
                Ok(fetched) => return Ok(fetched),
                Err(e) => last = format!("{addr}: {e}"),
            },
            None => last = "no leader is known yet".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(BackupError::Fetch(last))
}

/// The state member `addr` has applied, whether or not it leads or has a
/// quorum: for recovering a cluster that lost its quorum for good (writes
/// committed but not yet applied on that member are not in it).
pub async fn fetch_local(client: &GcsClient, addr: &str) -> Result<Fetched, BackupError> {
    fetch_from(client, addr, true)
        .await
        .map_err(|e| BackupError::Fetch(format!("{addr}: {e}")))
}

async fn fetch_from(client: &GcsClient, addr: &str, local: bool) -> Result<Fetched, String> {
    let request = BackupRequest {
        chunk_bytes: BACKUP_MAX_CHUNK,
        local,
    };
    let mut stream = client
        .rpc()
        .channel(addr)
        .stream::<Backup>(&request)
        .await
        .map_err(|e| e.to_string())?;
    let mut start = None;
    let mut body = Vec::new();
    while let Some(item) = stream.next().await {
        match item.map_err(|e| e.to_string())? {
            Err(e) => return Err(e.to_string()),
            Ok(BackupChunk::Start {
                member,
                total_bytes,
                ..
            }) => {
                body.reserve(total_bytes as usize);
                start = Some((member, total_bytes));
            }
            Ok(BackupChunk::Data(data)) => body.extend_from_slice(&data),
        }
    }
    let Some((member, total)) = start else {
        return Err("the member ended the backup stream without sending anything".into());
    };
    if body.len() as u64 != total {
        return Err(format!(
            "the backup stream ended after {} of {total} bytes",
            body.len()
        ));
    }
    // Never write a backup this build could not restore.
    let revision = SnapshotPayload::decode(&body)
        .map_err(|e| format!("the snapshot does not decode: {e}"))?
        .revision;
    Ok(Fetched {
        member,
        revision,
        body,
    })
}

/// Writes `body` as a backup file at `path`, atomically: a temporary file
/// in the same directory, synced, then renamed over `path`.
pub fn save(path: &Path, body: &[u8]) -> Result<u64, BackupError> {
    let bytes = encode_file(body);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| BackupError::Invalid(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })?;
    Ok(bytes.len() as u64)
}

/// Reads and checks a backup file: its decoded state.
pub fn load(path: &Path) -> Result<SnapshotPayload, BackupError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bad = |detail: String| BackupError::BadFile {
        path: path.to_path_buf(),
        detail,
    };
    let body = decode_file(&bytes).map_err(bad)?;
    SnapshotPayload::decode(body).map_err(|e| bad(format!("the snapshot does not decode: {e}")))
}

/// What [`restore`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub revision: u64,
    pub keys: usize,
    /// The last Raft term of the backed-up cluster; the new one elects its
    /// first leader in a later term.
    pub term: u64,
}

/// Whether `dir` may receive a restore: absent or empty. Never overwrite a
/// member's data.
pub fn require_empty(dir: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(BackupError::Invalid(format!(
                "{} is not empty; restore into a new directory (a restore never overwrites data)",
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Writes `payload` into `member_dir` (absent or empty) as the state of a
/// new cluster whose only voter is `id` at `addr`. A member started on the
/// directory with another address records that one instead (see
/// `GcsMember::bootstrap`).
pub async fn restore(
    payload: SnapshotPayload,
    member_dir: &Path,
    id: NodeId,
    addr: &str,
) -> Result<Restored, BackupError> {
    require_empty(member_dir)?;
    let store_err = |e: crate::GcsStoreError| BackupError::Io {
        path: member_dir.to_path_buf(),
        detail: e.to_string(),
    };
    let raft_err = |e: crate::types::StorageError| BackupError::Io {
        path: member_dir.to_path_buf(),
        detail: e.to_string(),
    };
    // The log id openraft gives the membership entry of `initialize`.
    let origin: LogId<NodeId> = LogId::default();
    let membership = openraft::Membership::new(
        vec![BTreeSet::from([id])],
        BTreeMap::from([(id, BasicNode::new(addr))]),
    );
    let meta = SnapshotMeta {
        last_log_id: Some(origin),
        last_membership: StoredMembership::new(Some(origin), membership),
        snapshot_id: format!("restored-{}", payload.revision),
    };
    // The snapshot covers the leader's read point, which comes after the
    // blank entry of its term: no term recorded in the state is later.
    let term = payload.last_applied.map_or(0, |l| l.leader_id.term);
    let restored = Restored {
        revision: payload.revision,
        keys: payload.kvs.len(),
        term,
    };
    let data = payload.encode().map_err(store_err)?;
    let (mut log, mut sm) = store::open(member_dir, StoreConfig::default()).map_err(store_err)?;
    sm.install_snapshot(&meta, Box::new(Cursor::new(data)))
        .await
        .map_err(raft_err)?;
    log.purge(origin).await.map_err(raft_err)?;
    // Voted in the old cluster's last term: the first election is later.
    log.save_vote(&openraft::Vote::new(term, id))
        .await
        .map_err(raft_err)?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_round_trips_and_every_damage_is_named() {
        let body = b"the whole state".to_vec();
        let file = encode_file(&body);
        assert_eq!(file.len(), HEADER_LEN + body.len() + TRAILER_LEN);
        assert_eq!(decode_file(&file).unwrap(), &body[..]);
        assert_eq!(decode_file(&encode_file(&[])).unwrap(), &[] as &[u8]);

        // A flipped bit anywhere is caught: in the body, the header, the
        // trailer.
        for at in [HEADER_LEN, HEADER_LEN + 5, file.len() - 1, 20] {
            let mut bad = file.clone();
            bad[at] ^= 0x01;
            let e = decode_file(&bad).unwrap_err();
            assert!(
                e.contains("checksum mismatch") || e.contains("announces"),
                "offset {at}: {e}"
            );
        }
        let mut bad = file.clone();
        bad[HEADER_LEN + 3] ^= 0x80;
        assert!(decode_file(&bad).unwrap_err().contains("checksum mismatch"));

        let truncated = decode_file(&file[..file.len() - 2]).unwrap_err();
        assert!(truncated.contains("truncated"), "{truncated}");
        let mut longer = file.clone();
        longer.push(0);
        assert!(decode_file(&longer).unwrap_err().contains("truncated"));

        let not_ours = decode_file(b"hello, this is not a backup file at all").unwrap_err();
        assert!(not_ours.contains("does not start like"), "{not_ours}");
        assert!(decode_file(b"")
            .unwrap_err()
            .contains("does not start like"));

        let mut newer = file.clone();
        newer[16..20].copy_from_slice(&9u32.to_le_bytes());
        let e = decode_file(&newer).unwrap_err();
        assert!(
            e.contains("backup format 9") && e.contains("reads format 1"),
            "{e}"
        );
    }

    #[test]
    fn save_is_atomic_and_load_names_a_damaged_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("gcs.backup");
        let payload = SnapshotPayload {
            format: crate::store::SNAPSHOT_FORMAT,
            last_applied: None,
            membership: Default::default(),
            revision: 3,
            compacted: 0,
            kvs: Vec::new(),
            leases: Vec::new(),
            sessions: Vec::new(),
            history: Vec::new(),
            session_clock: 0,
            session_used: Vec::new(),
        };
        let body = payload.encode().unwrap();
        save(&path, &body).unwrap();
        // Saved again over itself: still one file, no temporary left.
        save(&path, &body).unwrap();
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(load(&path).unwrap(), payload);

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        assert!(e.contains("checksum mismatch"), "{e}");
    }

    #[tokio::test]
    async fn a_restore_refuses_a_directory_with_data() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("something"), b"x").unwrap();
        let payload = SnapshotPayload::decode(
            &SnapshotPayload {
                format: crate::store::SNAPSHOT_FORMAT,
                last_applied: None,
                membership: Default::default(),
                revision: 0,
                compacted: 0,
                kvs: Vec::new(),
                leases: Vec::new(),
                sessions: Vec::new(),
                history: Vec::new(),
                session_clock: 0,
                session_used: Vec::new(),
            }
            .encode()
            .unwrap(),
        )
        .unwrap();
        let e = restore(payload, tmp.path(), 1, "127.0.0.1:1")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not empty"), "{e}");
    }
}
