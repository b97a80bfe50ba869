//! [`Catalog`]: the deployment types and applications a binary can run,
//! and the actor registry that goes with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use troupe_worker::{ActorType, Message, Registry};

use crate::config::BuildError;

use crate::app::Application;
use crate::deployment::{Deployment, HttpIngress, Serves};
use crate::replica::{Drain, HealthCheck, HttpCall, Reconfigure, Replica, Request};

/// One deployment type's registration.
pub struct DeploymentType<D: Deployment> {
    actor: ActorType<Replica<D>>,
}

impl<D: Deployment> DeploymentType<D> {
    /// `D`, answering health checks, drains and reconfigurations.
    pub fn new() -> Self {
        DeploymentType {
            actor: ActorType::shared()
                .handles_shared::<HealthCheck>()
                .handles_shared::<Drain>()
                .handles_shared::<Reconfigure>(),
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

/// Builds an application from its arguments (JSON, as a config gives them).
type AppFactory = Arc<dyn Fn(&Value) -> Result<Application, BuildError> + Send + Sync>;

struct AppBuilder {
    build: AppFactory,
    default_args: Value,
}

/// Deployment types, applications by name, and plain actor types.
#[derive(Clone, Default)]
pub struct Catalog {
    registry: Registry,
    apps: BTreeMap<String, Arc<AppBuilder>>,
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

    /// Adds an application builder without arguments, which `troupe serve
    /// run NAME` and configs (`app: NAME`) can start.
    pub fn app(
        mut self,
        name: &str,
        build: impl Fn() -> Application + Send + Sync + 'static,
    ) -> Self {
        let build: AppFactory = Arc::new(move |args: &Value| match args {
            Value::Null => Ok(build()),
            Value::Object(map) if map.is_empty() => Ok(build()),
            other => Err(BuildError::Args(format!(
                "this application takes no arguments, got {other}"
            ))),
        });
        let builder = AppBuilder {
            build,
            default_args: Value::Object(Default::default()),
        };
        self.apps.insert(name.to_owned(), Arc::new(builder));
        self
    }

    /// Adds an application builder taking arguments `A` (a config's `args`,
    /// Ray's builder arguments). `serve build` writes `A::default()`.
    pub fn app_with_args<A>(
        mut self,
        name: &str,
        build: impl Fn(A) -> Application + Send + Sync + 'static,
    ) -> Self
    where
        A: Serialize + DeserializeOwned + Default + 'static,
    {
        let default_args = serde_json::to_value(A::default()).unwrap_or(Value::Null);
        let defaults = default_args.clone();
        let build: AppFactory = Arc::new(move |args: &Value| {
            // Fields given override the defaults; the rest keep them.
            let merged = match (&defaults, args) {
                (_, Value::Null) => defaults.clone(),
                (Value::Object(base), Value::Object(given)) => {
                    let mut merged = base.clone();
                    merged.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Value::Object(merged)
                }
                (_, given) => given.clone(),
            };
            let args: A =
                serde_json::from_value(merged).map_err(|e| BuildError::Args(e.to_string()))?;
            Ok(build(args))
        });
        let builder = AppBuilder {
            build,
            default_args,
        };
        self.apps.insert(name.to_owned(), Arc::new(builder));
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

    /// The application named `name`, built with its default arguments.
    pub fn build_app(&self, name: &str) -> Option<Application> {
        let builder = self.apps.get(name)?;
        (builder.build)(&builder.default_args).ok()
    }

    /// The application named `name`, built with `args`.
    pub fn build_app_with(&self, name: &str, args: &Value) -> Result<Application, BuildError> {
        let builder = self.apps.get(name).ok_or(BuildError::Unknown)?;
        (builder.build)(args)
    }

    /// The default arguments of the application builder `name`.
    pub fn default_args(&self, name: &str) -> Option<Value> {
        self.apps.get(name).map(|b| b.default_args.clone())
    }

    /// The names of the registered applications.
    pub fn app_names(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
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
