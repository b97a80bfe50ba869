//! [`Catalog`]: the deployment types and applications a binary can run,
//! and the actor registry that goes with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use troupe_worker::{ActorType, Message, Registry};

use crate::app::Application;
use crate::deployment::{Deployment, HttpIngress, Serves};
use crate::replica::{Drain, HealthCheck, HttpCall, Replica, Request};

/// One deployment type's registration.
pub struct DeploymentType<D: Deployment> {
    actor: ActorType<Replica<D>>,
}

impl<D: Deployment> DeploymentType<D> {
    /// `D`, answering health checks.
    pub fn new() -> Self {
        DeploymentType {
            actor: ActorType::shared()
                .handles_shared::<HealthCheck>()
                .handles_shared::<Drain>(),
        }
    }

    /// `D` answers HTTP (it can be an application's ingress).
    pub fn http(mut self) -> Self
    where
        D: HttpIngress,
    {
        self.actor = self.actor.handles_shared::<HttpCall>();
        self
    }

    /// `D` answers HTTP with streamed bodies.
    pub fn http_streaming(mut self) -> Self
    where
        D: crate::deployment::StreamingIngress,
    {
        self.actor = self.actor.streams::<crate::replica::HttpStream>();
        self
    }

    /// `D` answers `M` from handles.
    pub fn serves<M: Message>(mut self) -> Self
    where
        D: Serves<M>,
    {
        self.actor = self.actor.handles_shared::<Request<M>>();
        self
    }
}

impl<D: Deployment> Default for DeploymentType<D> {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds an application.
pub type AppFactory = Arc<dyn Fn() -> Application + Send + Sync>;

/// Deployment types, applications by name, and plain actor types.
#[derive(Clone, Default)]
pub struct Catalog {
    registry: Registry,
    apps: BTreeMap<String, AppFactory>,
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a deployment type.
    pub fn deployment<D: Deployment>(mut self, deployment: DeploymentType<D>) -> Self {
        self.registry = self.registry.register(deployment.actor);
        self
    }

    /// Adds an application that `troupe serve run NAME` can start.
    pub fn app(
        mut self,
        name: &str,
        build: impl Fn() -> Application + Send + Sync + 'static,
    ) -> Self {
        self.apps.insert(name.to_owned(), Arc::new(build));
        self
    }

    /// Adds plain actor types (`registry.register(...)` calls).
    pub fn actors(mut self, add: impl FnOnce(Registry) -> Registry) -> Self {
        self.registry = add(self.registry);
        self
    }

    /// The actor registry nodes of this binary host.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// The application named `name`, built.
    pub fn build_app(&self, name: &str) -> Option<Application> {
        self.apps.get(name).map(|build| build())
    }

    /// The names of the registered applications.
    pub fn app_names(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }
}

impl From<Registry> for Catalog {
    fn from(registry: Registry) -> Self {
        Catalog {
            registry,
            apps: BTreeMap::new(),
        }
    }
}
