//! Deployments the tests deploy.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use troupe_serve::{
    Application, Bind, Catalog, Deployment, DeploymentHandle, DeploymentType, HttpIngress,
    ReplicaContext, ServeError, ServeRequest, ServeResponse, Serves,
};
use troupe_worker::Message;

/// Answers `hello <path>`; `POST /double` takes `{"n": 2}`; `/fail` fails;
/// `/slow` takes 1 s; `/who` names the replica.
pub struct Hello {
    replica: String,
}

impl Deployment for Hello {
    const NAME: &'static str = "test.Hello";
    type Args = ();

    async fn new((): (), cx: &ReplicaContext) -> Result<Self, String> {
        Ok(Hello {
            replica: cx.replica.to_string(),
        })
    }
}

#[derive(Deserialize)]
struct Double {
    n: u64,
}

impl HttpIngress for Hello {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        match request.path.as_str() {
            "/double" => {
                let Double { n } = request.json()?;
                Ok(ServeResponse::json(&serde_json::json!({ "n": n * 2 })))
            }
            "/fail" => Err(ServeError::Application {
                message: "database password is hunter2".into(),
            }),
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(1000)).await;
                Ok(ServeResponse::text("slow"))
            }
            "/who" => Ok(ServeResponse::text(self.replica.clone())),
            "/wait" => {
                let watch = Cancelled::default();
                tokio::time::sleep(Duration::from_secs(20)).await;
                watch.finish();
                Ok(ServeResponse::text("waited"))
            }
            path => Ok(ServeResponse::text(format!("hello {path}"))),
        }
    }
}

/// Handlers of `/wait` that were dropped before they finished.
pub static CANCELLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Handlers of `/wait` that started.
pub static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a handler dropped before `finish`.
struct Cancelled {
    finished: bool,
}

impl Default for Cancelled {
    fn default() -> Self {
        STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Cancelled { finished: false }
    }
}

impl Cancelled {
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if !self.finished {
            CANCELLED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Upper-cases text.
pub struct Upper;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shout(pub String);

impl Message for Shout {
    type Reply = String;
    const NAME: &'static str = "test.Upper.Shout";
}

impl Deployment for Upper {
    const NAME: &'static str = "test.Upper";
    type Args = ();

    async fn new((): (), _: &ReplicaContext) -> Result<Self, String> {
        Ok(Upper)
    }
}

impl Serves<Shout> for Upper {
    async fn call(&self, Shout(text): Shout) -> String {
        text.to_uppercase()
    }
}

/// Multiplies by its argument.
pub struct Scale {
    factor: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Apply(pub i64);

impl Message for Apply {
    type Reply = i64;
    const NAME: &'static str = "test.Scale.Apply";
}

impl Deployment for Scale {
    const NAME: &'static str = "test.Scale";
    type Args = i64;

    async fn new(factor: i64, _: &ReplicaContext) -> Result<Self, String> {
        if factor == 0 {
            return Err("factor 0 is refused".into());
        }
        Ok(Scale { factor })
    }
}

impl Serves<Apply> for Scale {
    async fn call(&self, Apply(x): Apply) -> i64 {
        x * self.factor
    }
}

/// Chaining: the body goes through `Upper`, then twice more.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainArgs {
    pub upper: DeploymentHandle<Upper>,
}

pub struct Chain {
    upper: DeploymentHandle<Upper>,
}

impl Deployment for Chain {
    const NAME: &'static str = "test.Chain";
    type Args = ChainArgs;

    async fn new(args: ChainArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Chain { upper: args.upper })
    }
}

impl HttpIngress for Chain {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        let text = request.text()?.to_owned();
        let loud = self.upper.call(Shout(text)).await?;
        Ok(ServeResponse::text(format!("{loud}!")))
    }
}

/// Ensemble: fans out to two scales at once, sums; dynamic selection: the
/// `model` query parameter picks one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnsembleArgs {
    pub double: DeploymentHandle<Scale>,
    pub triple: DeploymentHandle<Scale>,
}

pub struct Ensemble {
    args: EnsembleArgs,
}

impl Deployment for Ensemble {
    const NAME: &'static str = "test.Ensemble";
    type Args = EnsembleArgs;

    async fn new(args: EnsembleArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Ensemble { args })
    }
}

impl HttpIngress for Ensemble {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        let x: i64 = request
            .text()?
            .trim()
            .parse()
            .map_err(|e| ServeError::BadRequest(format!("the body must be an integer: {e}")))?;
        match request.path.as_str() {
            "/select" => {
                let model = match request.query.as_str() {
                    "model=double" => &self.args.double,
                    "model=triple" => &self.args.triple,
                    other => {
                        return Err(ServeError::BadRequest(format!("unknown model {other:?}")))
                    }
                };
                Ok(ServeResponse::text(model.call(Apply(x)).await?.to_string()))
            }
            _ => {
                let (a, b) = futures::join!(
                    self.args.double.call(Apply(x)),
                    self.args.triple.call(Apply(x))
                );
                let (a, b) = (a?, b?);
                Ok(ServeResponse::json(
                    &serde_json::json!({ "double": a, "triple": b, "sum": a + b }),
                ))
            }
        }
    }
}

/// Streams `n` lines, one every 20 ms.
pub struct Ticker {
    n: u32,
}

impl Deployment for Ticker {
    const NAME: &'static str = "test.Ticker";
    type Args = u32;

    async fn new(n: u32, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Ticker { n })
    }
}

impl troupe_serve::StreamingIngress for Ticker {
    async fn http_stream(
        &self,
        request: ServeRequest,
    ) -> Result<troupe_serve::ServeStream, ServeError> {
        if request.path == "/refuse" {
            return Err(ServeError::BadRequest("refused before streaming".into()));
        }
        let n = self.n;
        let lines = futures::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((format!("tick {i}\n").into_bytes(), i + 1))
        });
        Ok(troupe_serve::ServeStream::new("text/plain", lines))
    }
}

/// Answers `<replica id> <greeting>`, the greeting from its `user_config`
/// (`{"greeting": ...}`); `reconfigure` refuses `{"fail": true}`. Every
/// replica built and every `reconfigure` call is recorded.
pub struct Tuned {
    replica: String,
    greeting: std::cell::RefCell<String>,
}

/// Replicas of `Tuned` built (each constructor call), by replica id.
pub static TUNED_BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Every `Tuned::reconfigure` call: the replica id and the greeting it
/// applied, or `refused`.
pub static TUNED_CALLS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

impl Deployment for Tuned {
    const NAME: &'static str = "test.Tuned";
    type Args = ();

    async fn new((): (), cx: &ReplicaContext) -> Result<Self, String> {
        let replica = cx.replica.to_string();
        TUNED_BUILT.lock().unwrap().push(replica.clone());
        Ok(Tuned {
            replica,
            greeting: Default::default(),
        })
    }

    async fn reconfigure(&self, config: &serde_json::Value) -> Result<(), String> {
        if config["fail"] == true {
            let call = (self.replica.clone(), "refused".to_string());
            TUNED_CALLS.lock().unwrap().push(call);
            return Err("this user_config sets fail".into());
        }
        let greeting = config["greeting"].as_str().unwrap_or_default().to_owned();
        let call = (self.replica.clone(), greeting.clone());
        TUNED_CALLS.lock().unwrap().push(call);
        *self.greeting.borrow_mut() = greeting;
        Ok(())
    }
}

impl HttpIngress for Tuned {
    async fn http(&self, _: ServeRequest) -> Result<ServeResponse, ServeError> {
        let greeting = self.greeting.borrow().clone();
        Ok(ServeResponse::text(format!("{} {greeting}", self.replica)))
    }
}

/// The arguments of the `scaled` application builder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaledArgs {
    pub double: i64,
    pub triple: i64,
}

impl Default for ScaledArgs {
    fn default() -> Self {
        ScaledArgs {
            double: 2,
            triple: 3,
        }
    }
}

/// `Ensemble` over two `Scale`s whose factors are the builder's arguments.
pub fn scaled_app(args: ScaledArgs) -> Application {
    let mut app = Application::new("scaled");
    let double = app.add(Bind::<Scale>::new("double", args.double));
    let triple = app.add(Bind::<Scale>::new("triple", args.triple).num_replicas(2));
    app.ingress(Bind::<Ensemble>::new(
        "ensemble",
        EnsembleArgs { double, triple },
    ))
}

pub fn catalog() -> Catalog {
    Catalog::new()
        .deployment(DeploymentType::<Ticker>::new().http_streaming())
        .deployment(DeploymentType::<Hello>::new().http())
        .deployment(DeploymentType::<Tuned>::new().http())
        .deployment(DeploymentType::<Upper>::new().serves::<Shout>())
        .deployment(DeploymentType::<Scale>::new().serves::<Apply>())
        .deployment(DeploymentType::<Chain>::new().http())
        .deployment(DeploymentType::<Ensemble>::new().http())
        .app("hello", || {
            Application::new("hello").ingress(Bind::<Hello>::new("hello", ()))
        })
        .app("chain", || {
            let mut app = Application::new("chain");
            let upper = app.add(Bind::<Upper>::new("upper", ()));
            app.ingress(Bind::<Chain>::new("chain", ChainArgs { upper }))
        })
        .app_with_args("scaled", scaled_app)
}
