//! openraft's storage conformance suite against fresh stores (WAL + sled).

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use troupe_gcs::types::StorageError;
use troupe_gcs::{LogStore, StateMachineStore, TypeConfig};

use crate::support::open_store;

struct SledStoreBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SledStoreBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir()
            .map_err(|e| openraft::StorageIOError::write(openraft::AnyError::new(&e)))?;
        let (log, sm) = open_store(dir.path());
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(SledStoreBuilder).expect("openraft storage suite");
}
