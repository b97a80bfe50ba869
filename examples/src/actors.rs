//! The actor-API example's actor types.
//!
//! - [`Counter`]: the smallest stateful actor; [`Crash`] makes a handler
//!   panic, to show that the actor restarts (from its constructor argument)
//!   and the node goes on.
//! - [`ParameterServer`] and [`Trainer`]: a toy of data-parallel training.
//!   Trainers pull the weights, compute the gradient of a least-squares fit
//!   on their shard of the data, and push it; the server averages.

use serde::{Deserialize, Serialize};
use troupe::prelude::*;

/// A counter that starts at its argument.
pub struct Counter {
    value: i64,
}

impl Actor for Counter {
    const TYPE_NAME: &'static str = "Counter";
    type Args = i64;

    async fn start(start: i64, _: &ActorContext) -> Result<Self, String> {
        Ok(Counter { value: start })
    }
}

/// Adds to the counter; replies with the new value.
#[derive(Debug, Serialize, Deserialize)]
pub struct Add(pub i64);

impl Message for Add {
    type Reply = i64;
    const NAME: &'static str = "Counter.Add";
}

/// Reads the counter.
#[derive(Debug, Serialize, Deserialize)]
pub struct Get;

impl Message for Get {
    type Reply = i64;
    const NAME: &'static str = "Counter.Get";
}

/// Panics inside the handler.
#[derive(Debug, Serialize, Deserialize)]
pub struct Crash;

impl Message for Crash {
    type Reply = ();
    const NAME: &'static str = "Counter.Crash";
}

/// Blocks the actor's thread for this many milliseconds (a stand-in for
/// CPU-bound model code that did not move to `spawn_blocking`); the node's
/// RPC and control store go on meanwhile.
#[derive(Debug, Serialize, Deserialize)]
pub struct Hog(pub u64);

impl Message for Hog {
    type Reply = ();
    const NAME: &'static str = "Counter.Hog";
}

impl Handler<Hog> for Counter {
    async fn handle(&mut self, Hog(ms): Hog, _: &ActorContext) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Adds to another counter, through its handle: an actor calling an actor
/// (on whichever node that one runs). Replies with the other's new value.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddTo {
    pub counter: ActorId,
    pub amount: i64,
}

impl Message for AddTo {
    type Reply = Result<i64, String>;
    const NAME: &'static str = "Counter.AddTo";
}

impl Handler<AddTo> for Counter {
    async fn handle(&mut self, add: AddTo, cx: &ActorContext) -> Result<i64, String> {
        let other = cx.cluster.handle::<Counter>(add.counter);
        other.call(Add(add.amount)).await.map_err(|e| e.to_string())
    }
}

/// Which node runs the actor (to see where calls land).
#[derive(Debug, Serialize, Deserialize)]
pub struct WhereAreYou;

impl Message for WhereAreYou {
    type Reply = NodeId;
    const NAME: &'static str = "Counter.WhereAreYou";
}

impl Handler<Add> for Counter {
    async fn handle(&mut self, Add(n): Add, _: &ActorContext) -> i64 {
        self.value += n;
        self.value
    }
}

impl Handler<Get> for Counter {
    async fn handle(&mut self, _: Get, _: &ActorContext) -> i64 {
        self.value
    }
}

impl Handler<Crash> for Counter {
    async fn handle(&mut self, _: Crash, _: &ActorContext) {
        panic!("Counter was asked to crash");
    }
}

impl Handler<WhereAreYou> for Counter {
    async fn handle(&mut self, _: WhereAreYou, cx: &ActorContext) -> NodeId {
        cx.node
    }
}

/// Holds the model's weights; averages the gradients pushed to it.
pub struct ParameterServer {
    weights: Vec<f64>,
    learning_rate: f64,
    updates: u64,
}

/// The server's argument: the number of weights and the learning rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerConfig {
    pub dimensions: usize,
    pub learning_rate: f64,
}

impl Actor for ParameterServer {
    const TYPE_NAME: &'static str = "ParameterServer";
    type Args = ServerConfig;

    async fn start(config: ServerConfig, _: &ActorContext) -> Result<Self, String> {
        if !(config.learning_rate > 0.0 && config.learning_rate.is_finite()) {
            return Err(format!(
                "learning_rate must be a positive number, got {}",
                config.learning_rate
            ));
        }
        Ok(ParameterServer {
            weights: vec![0.0; config.dimensions],
            learning_rate: config.learning_rate,
            updates: 0,
        })
    }
}

/// The current weights.
#[derive(Debug, Serialize, Deserialize)]
pub struct Pull;

impl Message for Pull {
    type Reply = Vec<f64>;
    const NAME: &'static str = "ParameterServer.Pull";
}

/// One gradient step; replies with the number of updates so far.
#[derive(Debug, Serialize, Deserialize)]
pub struct Push(pub Vec<f64>);

impl Message for Push {
    type Reply = u64;
    const NAME: &'static str = "ParameterServer.Push";
}

impl Handler<Pull> for ParameterServer {
    async fn handle(&mut self, _: Pull, _: &ActorContext) -> Vec<f64> {
        self.weights.clone()
    }
}

impl Handler<Push> for ParameterServer {
    async fn handle(&mut self, Push(gradient): Push, _: &ActorContext) -> u64 {
        for (w, g) in self.weights.iter_mut().zip(gradient) {
            *w -= self.learning_rate * g;
        }
        self.updates += 1;
        self.updates
    }
}

/// Holds a shard of `(x, y)` samples of `y = x · true_weights`.
pub struct Trainer {
    samples: Vec<(Vec<f64>, f64)>,
}

/// A trainer's argument: its shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shard {
    pub samples: Vec<(Vec<f64>, f64)>,
}

impl Actor for Trainer {
    const TYPE_NAME: &'static str = "Trainer";
    type Args = Shard;

    async fn start(shard: Shard, _: &ActorContext) -> Result<Self, String> {
        Ok(Trainer {
            samples: shard.samples,
        })
    }
}

/// Pull from the named server, compute the gradient, push it; `steps`
/// times. Replies with the mean squared error before the last step.
#[derive(Debug, Serialize, Deserialize)]
pub struct Train {
    pub server: String,
    pub steps: u32,
}

impl Message for Train {
    type Reply = Result<f64, String>;
    const NAME: &'static str = "Trainer.Train";
}

impl Handler<Train> for Trainer {
    async fn handle(&mut self, train: Train, cx: &ActorContext) -> Result<f64, String> {
        let server = cx
            .cluster
            .get_actor::<ParameterServer>(&train.server)
            .await
            .map_err(|e| e.to_string())?;
        let mut loss = f64::NAN;
        for _ in 0..train.steps {
            let weights = server.call(Pull).await.map_err(|e| e.to_string())?;
            let (gradient, mse) = gradient(&weights, &self.samples);
            loss = mse;
            server
                .call(Push(gradient))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(loss)
    }
}

/// The gradient of the mean squared error of `weights` on `samples`, and
/// that error.
pub fn gradient(weights: &[f64], samples: &[(Vec<f64>, f64)]) -> (Vec<f64>, f64) {
    let mut gradient = vec![0.0; weights.len()];
    let mut squared = 0.0;
    for (x, y) in samples {
        let predicted: f64 = x.iter().zip(weights).map(|(a, b)| a * b).sum();
        let error = predicted - y;
        squared += error * error;
        for (g, xi) in gradient.iter_mut().zip(x) {
            *g += 2.0 * error * xi;
        }
    }
    let n = samples.len().max(1) as f64;
    gradient.iter_mut().for_each(|g| *g /= n);
    (gradient, squared / n)
}

/// Answers with what it is sent: the benchmark's actor.
pub struct Echo;

impl Actor for Echo {
    const TYPE_NAME: &'static str = "Echo";
    type Args = ();

    async fn start((): (), _: &ActorContext) -> Result<Self, String> {
        Ok(Echo)
    }
}

/// Bytes to send back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ping(pub Vec<u8>);

impl Message for Ping {
    type Reply = Vec<u8>;
    const NAME: &'static str = "Echo.Ping";
}

impl Handler<Ping> for Echo {
    async fn handle(&mut self, Ping(bytes): Ping, _: &ActorContext) -> Vec<u8> {
        bytes
    }
}

/// Every type of this example, registered.
pub fn registry() -> Registry {
    Registry::new()
        .register(
            ActorType::<Counter>::new()
                .handles::<Add>()
                .handles::<Get>()
                .handles::<Crash>()
                .handles::<Hog>()
                .handles::<AddTo>()
                .handles::<WhereAreYou>(),
        )
        .register(
            ActorType::<ParameterServer>::new()
                .handles::<Pull>()
                .handles::<Push>(),
        )
        .register(ActorType::<Trainer>::new().handles::<Train>())
        .register(ActorType::<Echo>::new().handles::<Ping>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_of_a_perfect_fit_is_zero() {
        let samples = vec![(vec![1.0, 2.0], 5.0), (vec![3.0, -1.0], 1.0)];
        let (g, mse) = gradient(&[1.0, 2.0], &samples);
        assert_eq!(mse, 0.0);
        assert!(g.iter().all(|x| *x == 0.0));
        let (g, mse) = gradient(&[0.0, 0.0], &samples);
        assert!(mse > 0.0);
        assert!(g[0] < 0.0, "increasing w0 lowers the error: {g:?}");
    }
}
