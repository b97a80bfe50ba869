//! Applications built in code: [`Application`], [`Bind`] (a deployment
//! with its options), [`DeploymentHandle`] (how one deployment calls
//! another), and [`deploy`].

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use troupe_core::resources::Resources;
use troupe_gcs::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeySelector, Operation, PutRequest, TxnOp,
    TxnRequest,
};
use troupe_worker::{codec, schema, Cluster, Message};

use crate::deployment::{Deployment, Serves};
use crate::http::ServeError;
use crate::runtime;
use crate::spec::{check_name, AppSpec, DeploymentSpec, APPS_PREFIX, DEPLOYED_AT_PREFIX};

/// A deployment with its arguments and options, ready to add to an
/// [`Application`]. Option names and defaults follow Ray Serve.
pub struct Bind<D: Deployment> {
    spec: DeploymentSpec,
    error: Option<String>,
    _type: PhantomData<fn() -> D>,
}

impl<D: Deployment> Bind<D> {
    /// Deployment `name` of type `D`, constructed from `args`: one
    /// replica, `max_ongoing_requests` 5, unlimited queue, no resources.
    pub fn new(name: &str, args: D::Args) -> Self {
        Bind {
            spec: DeploymentSpec {
                name: name.to_owned(),
                version: 0,
                type_name: D::NAME.to_owned(),
                args: codec::encode(&args),
                num_replicas: 1,
                max_ongoing_requests: 5,
                max_queued_requests: None,
                resources: Resources::new(),
                user_config: None,
                health_check_period_ms: 10_000,
                health_check_timeout_ms: 30_000,
                graceful_shutdown_timeout_ms: 20_000,
                retry_lost_requests: true,
                autoscaling: None,
            },
            error: check_name("deployment", name).err(),
            _type: PhantomData,
        }
    }

    pub fn num_replicas(mut self, n: u32) -> Self {
        self.spec.num_replicas = n;
        self
    }

    pub fn max_ongoing_requests(mut self, n: u32) -> Self {
        if n == 0 {
            self.error
                .get_or_insert("max_ongoing_requests must be at least 1".into());
        }
        self.spec.max_ongoing_requests = n;
        self
    }

    /// `-1`: without limit (the default).
    pub fn max_queued_requests(mut self, n: i64) -> Self {
        self.spec.max_queued_requests = match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) if n == -1 => None,
            Err(_) => {
                self.error.get_or_insert(format!(
                    "max_queued_requests must be -1 (unlimited) or a count, got {n}"
                ));
                None
            }
        };
        self
    }

    pub fn num_cpus(mut self, cpus: f64) -> Self {
        match self.spec.resources.clone().with_cpus(cpus) {
            Ok(r) => self.spec.resources = r,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    pub fn num_gpus(mut self, gpus: f64) -> Self {
        match self.spec.resources.clone().with_gpus(gpus) {
            Ok(r) => self.spec.resources = r,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    pub fn resource(mut self, name: &str, amount: f64) -> Self {
        match self.spec.resources.clone().with_custom(name, amount) {
            Ok(r) => self.spec.resources = r,
            Err(e) => {
                self.error.get_or_insert(e.to_string());
            }
        }
        self
    }

    /// Lets the autoscaler set the replica count (Ray Serve's
    /// `autoscaling_config`, with its names and defaults): between
    /// `min_replicas` and `max_replicas` (0 scales to zero when idle),
    /// starting at `initial_replicas` (else `min_replicas`), on the
    /// requests queued and in flight per replica.
    pub fn autoscaling_config(mut self, config: crate::config::AutoscalingConfig) -> Self {
        if let Err(e) = config.check() {
            self.error.get_or_insert(format!("autoscaling_config: {e}"));
        }
        let policy = config.policy();
        self.spec.num_replicas = policy.initial_replicas;
        self.spec.autoscaling = Some(policy);
        self
    }

    /// Handed to `reconfigure` on every replica.
    pub fn user_config(mut self, config: serde_json::Value) -> Self {
        self.spec.user_config = Some(config.to_string());
        self
    }

    pub fn health_check_period_s(mut self, seconds: f64) -> Self {
        self.spec.health_check_period_ms =
            seconds_to_ms(seconds, &mut self.error, "health_check_period_s");
        self
    }

    pub fn health_check_timeout_s(mut self, seconds: f64) -> Self {
        self.spec.health_check_timeout_ms =
            seconds_to_ms(seconds, &mut self.error, "health_check_timeout_s");
        self
    }

    /// Whether a request lost with its replica (node died, froze, cut off)
    /// is sent again to another replica within its deadline (default
    /// true: model inference is idempotent, and a node loss stays
    /// invisible to clients). Set false for requests that must not run
    /// twice: the lost replica may have run them.
    pub fn retry_lost_requests(mut self, retry: bool) -> Self {
        self.spec.retry_lost_requests = retry;
        self
    }

    pub fn graceful_shutdown_timeout_s(mut self, seconds: f64) -> Self {
        self.spec.graceful_shutdown_timeout_ms =
            seconds_to_ms(seconds, &mut self.error, "graceful_shutdown_timeout_s");
        self
    }
}

fn seconds_to_ms(seconds: f64, error: &mut Option<String>, option: &str) -> u64 {
    if !(seconds.is_finite() && seconds > 0.0) {
        error.get_or_insert(format!(
            "{option} must be a positive number of seconds, got {seconds}"
        ));
        return 1;
    }
    (seconds * 1000.0).round().max(1.0) as u64
}

/// An application: deployments bound in code, one of them the ingress.
#[derive(Debug, Clone)]
pub struct Application {
    spec: AppSpec,
    errors: Vec<String>,
}

impl Application {
    /// An empty application served at `/`.
    pub fn new(name: &str) -> Self {
        Application {
            spec: AppSpec {
                name: name.to_owned(),
                route_prefix: Some("/".into()),
                ingress: String::new(),
                streaming: false,
                deployments: Vec::new(),
                version: 0,
            },
            errors: check_name("application", name).err().into_iter().collect(),
        }
    }

    /// Where the proxy serves it (must start with `/`); `None`: only by
    /// handle.
    pub fn route_prefix(mut self, prefix: Option<&str>) -> Self {
        if let Some(p) = prefix {
            if !p.starts_with('/') {
                self.errors
                    .push(format!("route_prefix {p:?} must start with '/'"));
            }
        }
        self.spec.route_prefix = prefix.map(|p| {
            let trimmed = p.trim_end_matches('/');
            if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            }
        });
        self
    }

    /// Adds a deployment; returns the handle other deployments call it by.
    pub fn add<D: Deployment>(&mut self, bind: Bind<D>) -> DeploymentHandle<D> {
        if let Some(e) = bind.error {
            self.errors
                .push(format!("deployment {:?}: {e}", bind.spec.name));
        }
        if self
            .spec
            .deployments
            .iter()
            .any(|d| d.name == bind.spec.name)
        {
            self.errors
                .push(format!("deployment {:?} is added twice", bind.spec.name));
        }
        let mut handle = DeploymentHandle::new(&self.spec.name, &bind.spec.name);
        handle.relative = true;
        self.spec.deployments.push(bind.spec);
        handle
    }

    /// Adds the deployment that answers HTTP.
    pub fn ingress<D: Deployment>(mut self, bind: Bind<D>) -> Self {
        self.spec.ingress = bind.spec.name.clone();
        self.add(bind);
        self
    }

    /// Adds the deployment that answers HTTP with streamed bodies.
    pub fn streaming_ingress<D: crate::deployment::StreamingIngress>(
        mut self,
        bind: Bind<D>,
    ) -> Self {
        self.spec.streaming = true;
        self.ingress(bind)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The same application under another name (handles between its
    /// deployments follow).
    pub fn renamed(mut self, name: &str) -> Self {
        self.errors.extend(check_name("application", name).err());
        self.spec.name = name.to_owned();
        self
    }

    /// The spec as built so far, problems aside (for `serve build`).
    pub fn spec(&self) -> &AppSpec {
        &self.spec
    }

    /// The deployment named `name`, to override its options.
    pub(crate) fn deployment_mut(&mut self, name: &str) -> Option<&mut DeploymentSpec> {
        self.spec.deployments.iter_mut().find(|d| d.name == name)
    }

    /// The spec to deploy, or every problem with it.
    pub fn into_spec(self) -> Result<AppSpec, String> {
        let mut errors = self.errors;
        if self.spec.ingress.is_empty() {
            errors.push("no ingress deployment: add one with .ingress(Bind::new(..))".into());
        }
        match errors.is_empty() {
            true => Ok(self.spec),
            false => Err(format!(
                "application {:?} is invalid: {}",
                self.spec.name,
                errors.join("; ")
            )),
        }
    }
}

/// `new` as the successor of `old` (the spec stored under its name, if
/// any): a deployment whose code, arguments or resources changed gets the
/// application's next version (its replicas are replaced), one that only
/// changed its replica count, options or `user_config` keeps its version
/// (its replicas are kept; a new `user_config` is applied in place by
/// `reconfigure`); the application's version moves on when any
/// deployment's did.
pub fn successor(old: Option<&AppSpec>, mut new: AppSpec) -> AppSpec {
    let next = old.map_or(1, |o| o.version + 1);
    for d in &mut new.deployments {
        let kept = old
            .and_then(|o| o.deployments.iter().find(|p| p.name == d.name))
            .filter(|p| p.same_replicas(d));
        d.version = kept.map_or(next, |p| p.version);
    }
    let changed = old.is_none_or(|o| {
        o.deployments.len() != new.deployments.len()
            || o.deployments
                .iter()
                .zip(&new.deployments)
                .any(|(a, b)| a.version != b.version)
    });
    new.version = match old {
        Some(o) if !changed => o.version,
        _ => next,
    };
    new
}

/// Writes `app` as desired state (see [`successor`] for what a change
/// replaces). Returns the application's version.
pub async fn deploy(cluster: &Cluster, app: Application) -> Result<u64, ServeError> {
    let spec = app.into_spec().map_err(ServeError::BadRequest)?;
    let key = format!("{APPS_PREFIX}{}", spec.name).into_bytes();
    let gcs = cluster.gcs();
    let unavailable =
        |e: troupe_gcs::client::GcsClientError| ServeError::Unavailable(e.to_string());
    loop {
        let current = gcs.get(key.clone()).await.map_err(unavailable)?;
        let (compare, old) = match &current {
            Some(kv) => (
                Compare {
                    key: key.clone(),
                    op: CompareOp::Equal,
                    target: CompareTarget::ModRevision(kv.mod_revision),
                },
                Some(
                    schema::decode::<AppSpec>(&kv.value)
                        .map_err(|e| ServeError::Unavailable(e.to_string()))?,
                ),
            ),
            None => (Compare::absent(key.clone()), None),
        };
        let spec = successor(old.as_ref(), spec.clone());
        if old.as_ref() == Some(&spec) {
            return Ok(spec.version);
        }
        let stamp =
            serde_json::to_vec(&crate::declarative::unix_now_s()).expect("a number serializes");
        let txn = TxnRequest {
            compares: vec![compare],
            success: vec![
                TxnOp::Put(PutRequest::new(key.clone(), schema::encode(&spec))),
                TxnOp::Put(PutRequest::new(
                    format!("{DEPLOYED_AT_PREFIX}{}", spec.name),
                    stamp,
                )),
            ],
            failure: vec![],
        };
        let response = gcs.write(Operation::Txn(txn)).await.map_err(unavailable)?;
        if let Ok(troupe_gcs::Outcome::Txn(t)) = response.outcome {
            if t.succeeded {
                return Ok(spec.version);
            }
        }
    }
}

/// Deletes an application (its replicas are stopped) and its deploy time.
pub async fn delete(cluster: &Cluster, app: &str) -> Result<(), ServeError> {
    let delete = |key: String| {
        TxnOp::Delete(DeleteRequest {
            selector: KeySelector::Key(key.into_bytes()),
            prev_kv: false,
        })
    };
    let txn = TxnRequest {
        compares: vec![],
        success: vec![
            delete(format!("{APPS_PREFIX}{app}")),
            delete(format!("{DEPLOYED_AT_PREFIX}{app}")),
        ],
        failure: vec![],
    };
    cluster
        .gcs()
        .write(Operation::Txn(txn))
        .await
        .map_err(|e| ServeError::Unavailable(e.to_string()))?;
    Ok(())
}

/// How a deployment calls another: by application and deployment name,
/// through the caller's router (power of two choices over the replicas'
/// in-flight counts). Serializable, so it can be a constructor argument.
///
/// A handle made by [`Application::add`] names its deployment *within the
/// same application*: when a replica decodes its arguments, such a handle
/// takes the name the application was deployed under (a config can deploy
/// one builder under several names).
pub struct DeploymentHandle<D> {
    app: String,
    deployment: String,
    relative: bool,
    _type: PhantomData<fn() -> D>,
}

#[derive(Serialize, Deserialize)]
struct HandleWire {
    app: String,
    deployment: String,
    relative: bool,
}

impl<D> Serialize for DeploymentHandle<D> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HandleWire {
            app: self.app.clone(),
            deployment: self.deployment.clone(),
            relative: self.relative,
        }
        .serialize(serializer)
    }
}

impl<'de, D> Deserialize<'de> for DeploymentHandle<D> {
    fn deserialize<De: serde::Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        let wire = HandleWire::deserialize(deserializer)?;
        let app = match wire.relative {
            true => crate::deployment::decoding_app().unwrap_or(wire.app),
            false => wire.app,
        };
        Ok(DeploymentHandle {
            app,
            deployment: wire.deployment,
            relative: false,
            _type: PhantomData,
        })
    }
}

impl<D> Clone for DeploymentHandle<D> {
    fn clone(&self) -> Self {
        DeploymentHandle {
            app: self.app.clone(),
            deployment: self.deployment.clone(),
            relative: self.relative,
            _type: PhantomData,
        }
    }
}

impl<D> std::fmt::Debug for DeploymentHandle<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeploymentHandle({}/{})", self.app, self.deployment)
    }
}

impl<D: Deployment> DeploymentHandle<D> {
    /// The handle of `deployment` in `app`.
    pub fn new(app: &str, deployment: &str) -> Self {
        DeploymentHandle {
            app: app.to_owned(),
            deployment: deployment.to_owned(),
            relative: false,
            _type: PhantomData,
        }
    }

    /// Sends `request` to one replica and waits for the reply. Needs serve
    /// running in this process (every node, and `troupe serve run`).
    pub async fn call<M: Message + Clone>(&self, request: M) -> Result<M::Reply, ServeError>
    where
        D: Serves<M>,
    {
        let router = runtime::current()?.router(&self.app, &self.deployment);
        router.call::<D, M>(request).await
    }
}
