//! [`Spawn`]: the options of one spawn, then the spawn itself (`.await`).

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;

use serde_bytes::ByteBuf;
use troupe_core::id::ActorId;
use troupe_core::resources::Resources;

use super::{ActorHandle, Cluster};
use crate::actor::{Actor, ActorError};
use crate::codec;
use crate::protocol::{ControlRequest, SpawnRequest};
use crate::schema::{ActorName, ActorOptions, Lifetime, Owner, RetryLimit, DEFAULT_NAMESPACE};

/// A spawn being set up: `cluster.spawn::<A>(args).num_gpus(0.3).name("x").await`.
///
/// Option errors (a negative amount, an invalid name) are kept and returned
/// by the `.await`, so the chain reads straight.
#[must_use = "a spawn does nothing until it is awaited"]
pub struct Spawn<A: Actor> {
    cluster: Cluster,
    args: Vec<u8>,
    options: ActorOptions,
    namespace: String,
    name: Option<String>,
    error: Option<ActorError>,
    _type: PhantomData<fn() -> A>,
}

impl<A: Actor> Spawn<A> {
    pub(super) fn new(cluster: Cluster, args: A::Args) -> Self {
        Spawn {
            cluster,
            args: codec::encode(&args),
            options: ActorOptions::default(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            name: None,
            error: None,
            _type: PhantomData,
        }
    }

    fn resources(
        mut self,
        f: impl FnOnce(Resources) -> Result<Resources, troupe_core::resources::ResourceError>,
    ) -> Self {
        let current = std::mem::take(&mut self.options.resources);
        match f(current) {
            Ok(resources) => self.options.resources = resources,
            Err(e) => {
                self.error
                    .get_or_insert(ActorError::InvalidOptions(e.to_string()));
            }
        }
        self
    }

    /// CPUs one instance needs (fractions allowed, e.g. `0.5`).
    pub fn num_cpus(self, cpus: f64) -> Self {
        self.resources(|r| r.with_cpus(cpus))
    }

    /// GPUs one instance needs (fractions allowed, e.g. `0.3`).
    pub fn num_gpus(self, gpus: f64) -> Self {
        self.resources(|r| r.with_gpus(gpus))
    }

    /// Bytes of memory one instance needs.
    pub fn memory_bytes(self, bytes: u64) -> Self {
        self.resources(|r| Ok(r.with_memory_bytes(bytes)))
    }

    /// An amount of a custom resource one instance needs.
    pub fn resource(self, name: &str, amount: f64) -> Self {
        let name = name.to_owned();
        self.resources(move |r| r.with_custom(name, amount))
    }

    /// Spreads the actor over the nodes with the others of `group`: it is
    /// placed on a node with room holding the fewest live actors of the
    /// group (Ray's `SPREAD` strategy, for a set of actors you name, e.g.
    /// the shards of one model). A preference: with room on one node only,
    /// it goes there.
    pub fn spread_group(mut self, group: impl Into<String>) -> Self {
        self.options.spread_group = Some(group.into());
        self
    }

    /// A cluster-wide name (unique within the namespace while the actor
    /// lives), for [`Cluster::get_actor`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The namespace of the name (default: `"default"`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// How often the actor is restarted after its node dies or a handler
    /// panics: Ray's convention, `-1` without limit (default 0).
    pub fn max_restarts(mut self, n: i64) -> Self {
        match RetryLimit::from_ray("max_restarts", n) {
            Ok(limit) => self.options.max_restarts = limit,
            Err(e) => {
                self.error
                    .get_or_insert(ActorError::InvalidOptions(e.to_string()));
            }
        }
        self
    }

    /// How often a call whose instance was lost is retried on the restarted
    /// actor: `-1` without limit (default 0). A retried call may run twice.
    pub fn max_task_retries(mut self, n: i64) -> Self {
        match RetryLimit::from_ray("max_task_retries", n) {
            Ok(limit) => self.options.max_task_retries = limit,
            Err(e) => {
                self.error
                    .get_or_insert(ActorError::InvalidOptions(e.to_string()));
            }
        }
        self
    }

    /// Lets the actor outlive the process that spawned it.
    pub fn detached(mut self) -> Self {
        self.options.lifetime = Lifetime::Detached;
        self
    }

    async fn run(self) -> Result<ActorHandle<A>, ActorError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let name = self
            .name
            .map(|name| ActorName::new(self.namespace, name))
            .transpose()
            .map_err(|e| ActorError::InvalidOptions(e.to_string()))?;
        let inner = &self.cluster.inner;
        let request = SpawnRequest {
            id: ActorId::random(),
            type_name: A::TYPE_NAME.to_owned(),
            name,
            owner: Owner::Node(inner.me),
            options: self.options,
            args: ByteBuf::from(self.args),
            min_revision: inner.registered_at,
        };
        let reply = self
            .cluster
            .control(ControlRequest::Spawn(Box::new(request)))
            .await?;
        Ok(ActorHandle::new(
            self.cluster.clone(),
            reply.record.id,
            reply.revision,
        ))
    }
}

impl<A: Actor> IntoFuture for Spawn<A> {
    type Output = Result<ActorHandle<A>, ActorError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
