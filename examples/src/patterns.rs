//! The serve examples' deployments: one small application per
//! composition pattern, plus `noop` for the benchmarks.
//!
//! - `chain`: `Pipeline` → `Normalize` → `WordCount` (each a deployment
//!   called through a handle).
//! - `ensemble`: `Vote` fans out to three `Lexicon` scorers at once and
//!   averages their scores.
//! - `select`: `Router` picks `Lexicon` "fast" or "thorough" per request
//!   (`?model=`), dynamic selection.
//! - `noop` / `noop-chain`: the benchmark apps (a short string; the same
//!   through a second deployment).
//! - `sleepy`: the autoscaling benchmark's app, Ray Serve's `Sleepy` peer
//!   (a 50 ms async sleep, then "ok"); its YAML config gives it an
//!   `autoscaling_config` (`examples/serve/autoscale/`).
//! - `Ticker`: a streaming ingress (a line naming the stream, then one line
//!   at a time), for the tests of streamed bodies across node failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use troupe::prelude::*;
use troupe::serve::{ServeStream, StreamingIngress};

/// Trims and lower-cases text.
pub struct Normalize;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Text(pub String);

impl Message for Text {
    type Reply = String;
    const NAME: &'static str = "patterns.Normalize.Text";
}

impl Deployment for Normalize {
    const NAME: &'static str = "patterns.Normalize";
    type Args = ();

    async fn new((): (), _: &ReplicaContext) -> Result<Self, String> {
        Ok(Normalize)
    }
}

impl Serves<Text> for Normalize {
    async fn call(&self, Text(text): Text) -> String {
        text.trim().to_lowercase()
    }
}

/// Counts words.
pub struct WordCount;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count(pub String);

impl Message for Count {
    type Reply = usize;
    const NAME: &'static str = "patterns.WordCount.Count";
}

impl Deployment for WordCount {
    const NAME: &'static str = "patterns.WordCount";
    type Args = ();

    async fn new((): (), _: &ReplicaContext) -> Result<Self, String> {
        Ok(WordCount)
    }
}

impl Serves<Count> for WordCount {
    async fn call(&self, Count(text): Count) -> usize {
        text.split_whitespace().count()
    }
}

/// The chain's ingress.
pub struct Pipeline {
    args: PipelineArgs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineArgs {
    pub normalize: DeploymentHandle<Normalize>,
    pub count: DeploymentHandle<WordCount>,
}

impl Deployment for Pipeline {
    const NAME: &'static str = "patterns.Pipeline";
    type Args = PipelineArgs;

    async fn new(args: PipelineArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Pipeline { args })
    }
}

impl HttpIngress for Pipeline {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        let text = request.text()?.to_owned();
        let normal = self.args.normalize.call(Text(text)).await?;
        let words = self.args.count.call(Count(normal.clone())).await?;
        Ok(ServeResponse::json(
            &serde_json::json!({ "text": normal, "words": words }),
        ))
    }
}

/// Scores text by counting the positive and negative words it knows.
pub struct Lexicon {
    positive: Vec<String>,
    negative: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LexiconArgs {
    pub positive: Vec<String>,
    pub negative: Vec<String>,
}

impl LexiconArgs {
    pub fn new(positive: &[&str], negative: &[&str]) -> Self {
        LexiconArgs {
            positive: positive.iter().map(|s| s.to_string()).collect(),
            negative: negative.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Score(pub String);

impl Message for Score {
    type Reply = f64;
    const NAME: &'static str = "patterns.Lexicon.Score";
}

impl Deployment for Lexicon {
    const NAME: &'static str = "patterns.Lexicon";
    type Args = LexiconArgs;

    async fn new(args: LexiconArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Lexicon {
            positive: args.positive,
            negative: args.negative,
        })
    }
}

impl Serves<Score> for Lexicon {
    async fn call(&self, Score(text): Score) -> f64 {
        let words: Vec<String> = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let hits = |list: &[String]| words.iter().filter(|w| list.contains(w)).count() as f64;
        let (good, bad) = (hits(&self.positive), hits(&self.negative));
        if good + bad == 0.0 {
            0.0
        } else {
            (good - bad) / (good + bad)
        }
    }
}

/// The ensemble's ingress.
pub struct Vote {
    models: Vec<DeploymentHandle<Lexicon>>,
}

impl Deployment for Vote {
    const NAME: &'static str = "patterns.Vote";
    type Args = Vec<DeploymentHandle<Lexicon>>;

    async fn new(models: Self::Args, _: &ReplicaContext) -> Result<Self, String> {
        if models.is_empty() {
            return Err("an ensemble needs at least one model".into());
        }
        Ok(Vote { models })
    }
}

impl HttpIngress for Vote {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        let text = request.text()?.to_owned();
        let calls = self.models.iter().map(|m| m.call(Score(text.clone())));
        let scores = futures::future::try_join_all(calls).await?;
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        Ok(ServeResponse::json(
            &serde_json::json!({ "scores": scores, "mean": mean }),
        ))
    }
}

/// Dynamic selection's ingress: `?model=fast` or `?model=thorough`.
pub struct Router {
    fast: DeploymentHandle<Lexicon>,
    thorough: DeploymentHandle<Lexicon>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterArgs {
    pub fast: DeploymentHandle<Lexicon>,
    pub thorough: DeploymentHandle<Lexicon>,
}

impl Deployment for Router {
    const NAME: &'static str = "patterns.Router";
    type Args = RouterArgs;

    async fn new(args: RouterArgs, _: &ReplicaContext) -> Result<Self, String> {
        Ok(Router {
            fast: args.fast,
            thorough: args.thorough,
        })
    }
}

impl HttpIngress for Router {
    async fn http(&self, request: ServeRequest) -> Result<ServeResponse, ServeError> {
        let model = match request.query.as_str() {
            "" | "model=fast" => ("fast", &self.fast),
            "model=thorough" => ("thorough", &self.thorough),
            other => {
                return Err(ServeError::BadRequest(format!(
                    "unknown {other:?}; use ?model=fast or ?model=thorough"
                )))
            }
        };
        let score = model.1.call(Score(request.text()?.to_owned())).await?;
        Ok(ServeResponse::json(
            &serde_json::json!({ "model": model.0, "score": score }),
        ))
    }
}

/// Answers a short string: the benchmarks' no-op.
pub struct Noop;

impl Deployment for Noop {
    const NAME: &'static str = "patterns.Noop";
    type Args = ();

    async fn new((): (), _: &ReplicaContext) -> Result<Self, String> {
        Ok(Noop)
    }
}

impl HttpIngress for Noop {
    async fn http(&self, _: ServeRequest) -> Result<ServeResponse, ServeError> {
        Ok(ServeResponse::text("ok"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping;

impl Message for Ping {
    type Reply = String;
    const NAME: &'static str = "patterns.Noop.Ping";
}

impl Serves<Ping> for Noop {
    async fn call(&self, _: Ping) -> String {
        "ok".into()
    }
}

/// Sleeps 50 ms without holding a thread, then answers "ok": the
/// autoscaling benchmark's deployment, the same as Ray Serve's `Sleepy`
/// peer (`asyncio.sleep(0.05)`), so its replicas are bound by concurrency,
/// not CPU.
pub struct Sleepy;

/// How long [`Sleepy`] sleeps per request.
pub const SLEEPY_SERVICE_TIME: Duration = Duration::from_millis(50);

impl Deployment for Sleepy {
    const NAME: &'static str = "patterns.Sleepy";
    type Args = ();

    async fn new((): (), _: &ReplicaContext) -> Result<Self, String> {
        Ok(Sleepy)
    }
}

impl HttpIngress for Sleepy {
    async fn http(&self, _: ServeRequest) -> Result<ServeResponse, ServeError> {
        tokio::time::sleep(SLEEPY_SERVICE_TIME).await;
        Ok(ServeResponse::text("ok"))
    }
}

/// The benchmarks' chain: ingress → `Noop` through a handle.
pub struct NoopChain {
    next: DeploymentHandle<Noop>,
}

impl Deployment for NoopChain {
    const NAME: &'static str = "patterns.NoopChain";
    type Args = DeploymentHandle<Noop>;

    async fn new(next: Self::Args, _: &ReplicaContext) -> Result<Self, String> {
        Ok(NoopChain { next })
    }
}

impl HttpIngress for NoopChain {
    async fn http(&self, _: ServeRequest) -> Result<ServeResponse, ServeError> {
        Ok(ServeResponse::text(self.next.call(Ping).await?))
    }
}

/// Streams a line `start replica=<id> pid=<pid> stream=<k>` (`k`: the
/// streams this replica has started, from 0), then `tick 0` .. `tick
/// n-1`, one every `every_ms`; `?lines=n` overrides the number of ticks.
/// The first line says which replica, in which process, began the stream,
/// so a client can tell a stream that was started twice.
pub struct Ticker {
    args: TickerArgs,
    replica: ReplicaId,
    started: AtomicU64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TickerArgs {
    /// Ticks per stream.
    pub lines: u32,
    /// Milliseconds between ticks.
    pub every_ms: u64,
}

impl Default for TickerArgs {
    fn default() -> Self {
        TickerArgs {
            lines: 10,
            every_ms: 100,
        }
    }
}

impl Deployment for Ticker {
    const NAME: &'static str = "patterns.Ticker";
    type Args = TickerArgs;

    async fn new(args: TickerArgs, cx: &ReplicaContext) -> Result<Self, String> {
        Ok(Ticker {
            args,
            replica: cx.replica,
            started: AtomicU64::new(0),
        })
    }
}

impl StreamingIngress for Ticker {
    async fn http_stream(&self, request: ServeRequest) -> Result<ServeStream, ServeError> {
        let lines = match request.query.strip_prefix("lines=") {
            Some(n) => n
                .parse()
                .map_err(|e| ServeError::BadRequest(format!("?lines={n}: {e}")))?,
            None => self.args.lines,
        };
        let every = Duration::from_millis(self.args.every_ms);
        let start = format!(
            "start replica={} pid={} stream={}\n",
            self.replica,
            std::process::id(),
            self.started.fetch_add(1, Ordering::Relaxed)
        );
        let ticks = futures::stream::unfold(0, move |i| async move {
            if i == lines {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((format!("tick {i}\n").into_bytes(), i + 1))
        });
        let body = futures::stream::once(async move { start.into_bytes() }).chain(ticks);
        Ok(ServeStream::new("text/plain", body))
    }
}

/// The chain application.
pub fn chain_app(replicas: u32) -> Application {
    let mut app = Application::new("chain");
    let normalize = app.add(Bind::<Normalize>::new("normalize", ()).num_replicas(replicas));
    let count = app.add(Bind::<WordCount>::new("count", ()).num_replicas(replicas));
    app.ingress(
        Bind::<Pipeline>::new("pipeline", PipelineArgs { normalize, count }).num_replicas(replicas),
    )
}

fn lexicons(app: &mut Application) -> [DeploymentHandle<Lexicon>; 3] {
    [
        app.add(Bind::<Lexicon>::new(
            "general",
            LexiconArgs::new(&["good", "great", "fine"], &["bad", "awful"]),
        )),
        app.add(Bind::<Lexicon>::new(
            "movies",
            LexiconArgs::new(&["gripping", "moving"], &["boring", "slow"]),
        )),
        app.add(Bind::<Lexicon>::new(
            "food",
            LexiconArgs::new(&["tasty", "fresh"], &["stale", "bland"]),
        )),
    ]
}

/// The ensemble application.
pub fn ensemble_app() -> Application {
    let mut app = Application::new("ensemble");
    let models = lexicons(&mut app).to_vec();
    app.ingress(Bind::<Vote>::new("vote", models))
}

/// The dynamic-selection application.
pub fn select_app() -> Application {
    let mut app = Application::new("select");
    let fast = app.add(Bind::<Lexicon>::new(
        "fast",
        LexiconArgs::new(&["good"], &["bad"]),
    ));
    let thorough = app.add(Bind::<Lexicon>::new(
        "thorough",
        LexiconArgs::new(
            &["good", "great", "fine", "tasty"],
            &["bad", "awful", "stale"],
        ),
    ));
    app.ingress(Bind::<Router>::new("router", RouterArgs { fast, thorough }))
}

/// The benchmarks' applications.
pub fn noop_app(replicas: u32) -> Application {
    Application::new("noop").ingress(Bind::<Noop>::new("noop", ()).num_replicas(replicas))
}

/// The autoscaling benchmark's application: one `sleepy` replica unless
/// a config gives it an `autoscaling_config`
/// (`examples/serve/autoscale/sleepy.yaml`).
pub fn sleepy_app() -> Application {
    Application::new("sleepy").ingress(Bind::<Sleepy>::new("sleepy", ()))
}

pub fn noop_chain_app() -> Application {
    let mut app = Application::new("noop-chain");
    let next = app.add(Bind::<Noop>::new("noop", ()));
    app.ingress(Bind::<NoopChain>::new("ingress", next))
}

/// Every deployment type and application of the serve examples.
pub fn catalog() -> Catalog {
    Catalog::new()
        .deployment(DeploymentType::<Normalize>::new().serves::<Text>())
        .deployment(DeploymentType::<WordCount>::new().serves::<Count>())
        .deployment(DeploymentType::<Pipeline>::new().http())
        .deployment(DeploymentType::<Lexicon>::new().serves::<Score>())
        .deployment(DeploymentType::<Vote>::new().http())
        .deployment(DeploymentType::<Router>::new().http())
        .deployment(DeploymentType::<Noop>::new().http().serves::<Ping>())
        .deployment(DeploymentType::<NoopChain>::new().http())
        .deployment(DeploymentType::<Ticker>::new().http_streaming())
        .deployment(DeploymentType::<Sleepy>::new().http())
        .app("chain", || chain_app(1))
        .app("ensemble", ensemble_app)
        .app("select", select_app)
        .app("noop", || noop_app(1))
        .app("noop-2", || noop_app(2).route_prefix(Some("/")))
        .app("noop-chain", noop_chain_app)
        .app("sleepy", sleepy_app)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The autoscaling benchmark's config builds against this catalog:
    /// `sleepy` autoscaled as the file says, with Ray's `Sleepy`'s limits.
    #[test]
    fn the_autoscaling_benchmark_config_builds_an_autoscaled_sleepy() {
        let text = include_str!("../serve/autoscale/sleepy.yaml");
        for min in [0u32, 1] {
            let yaml = text.replace("MIN_REPLICAS", &min.to_string());
            let config = troupe::serve::config::parse_yaml(&yaml).unwrap();
            let specs = troupe::serve::config::build_specs(&config, &catalog()).unwrap();
            assert_eq!(specs.len(), 1);
            let app = &specs[0];
            assert_eq!(
                (app.name.as_str(), app.ingress.as_str()),
                ("sleepy", "sleepy")
            );
            assert_eq!(app.route_prefix.as_deref(), Some("/"));
            let d = &app.deployments[0];
            let policy = d.autoscaling.expect("sleepy is autoscaled");
            assert_eq!(
                (policy.min_replicas, policy.max_replicas, d.num_replicas),
                (min, 8, min)
            );
            assert_eq!(policy.target_ongoing_requests, 2.0);
            assert_eq!(
                (policy.upscale_delay_ms, policy.downscale_delay_ms),
                (2_000, 20_000)
            );
            assert_eq!(
                (policy.look_back_ms, policy.metrics_interval_ms),
                (10_000, 1_000)
            );
            assert_eq!(d.max_ongoing_requests, 5);
            assert_eq!(d.resources.cpus().to_string(), "0.25");
        }
    }
}
