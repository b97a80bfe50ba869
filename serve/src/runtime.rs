//! The process's serve runtime: the cluster it talks to and the routers of
//! the deployments it calls. Installed once per process by whatever runs
//! serve there (a node, `troupe serve run`); handles find it here, which
//! is what lets them travel inside constructor arguments.

use std::sync::{Arc, OnceLock};

use troupe_worker::Cluster;

use crate::http::ServeError;
use crate::router::{Router, Routers};

static CURRENT: OnceLock<Arc<ServeRuntime>> = OnceLock::new();

/// The serve runtime of this process.
pub struct ServeRuntime {
    cluster: Cluster,
    routers: Routers,
}

impl ServeRuntime {
    /// The router of `app`/`deployment`.
    pub fn router(&self, app: &str, deployment: &str) -> Arc<Router> {
        self.routers.get(&self.cluster, app, deployment)
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The process's routers.
    pub(crate) fn routers(&self) -> &Routers {
        &self.routers
    }
}

/// Installs the runtime for `cluster` (the first call wins; a process
/// belongs to one cluster).
pub fn install(cluster: Cluster) -> Arc<ServeRuntime> {
    CURRENT
        .get_or_init(|| {
            Arc::new(ServeRuntime {
                cluster,
                routers: Routers::default(),
            })
        })
        .clone()
}

/// The runtime, if serve runs in this process.
pub fn current() -> Result<Arc<ServeRuntime>, ServeError> {
    CURRENT.get().cloned().ok_or_else(|| {
        ServeError::Unavailable(
            "serve is not running in this process; call troupe_serve::start on a node first".into(),
        )
    })
}
