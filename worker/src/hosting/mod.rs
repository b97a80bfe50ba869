//! Local hosting: the actix arbiters that run this node's actor instances,
//! and the table of what runs here.
//!
//! Arbiters are threads of their own (an actix `System` on a dedicated
//! thread owns them), apart from the tokio runtime that serves the node's
//! RPC and the control store: a handler that hogs its arbiter slows the
//! actors on that arbiter, never the node's network handling.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_rt::{Arbiter, ArbiterHandle, System};
use tokio::sync::{oneshot, watch};
use troupe_core::id::ActorId;
use troupe_core::rpc::{RpcServer, ServerHandle};

mod host;

pub(crate) use host::{Host, HostEvent, HostEvents, LocalAddr, SharedTyped, Typed};

use crate::actor::{ActorContext, DynActorType};

/// The tracing target of "instance started" / "instance stopped" lines
/// (info level, with `actor` and `incarnation`): the chaos harness reads
/// them to check that no actor runs on two nodes at once.
pub const INSTANCE_LOG: &str = "troupe_worker::instance";

/// The arbiter (of `arbiters`) that runs `actor` on any node: callers use
/// it to pick the data-plane listener on the actor's own thread.
pub(crate) fn arbiter_index(actor: ActorId, arbiters: usize) -> usize {
    (actor.get() % arbiters.max(1) as u64) as usize
}

/// One instance running here.
#[derive(Clone)]
pub(crate) struct LocalActor {
    pub incarnation: u64,
    pub addr: LocalAddr,
}

/// The arbiters and the table of local instances.
pub(crate) struct Hosting {
    system: System,
    arbiters: Vec<ArbiterHandle>,
    /// The data-plane servers, one per arbiter, running on it.
    servers: Mutex<Vec<ServerHandle>>,
    table: Mutex<HashMap<ActorId, LocalActor>>,
    /// Bumped on every change of the table, for callers that wait for an
    /// instance to appear.
    changes: watch::Sender<u64>,
}

impl Hosting {
    /// Starts `threads` arbiters (at least one).
    pub(crate) fn new(threads: usize) -> io::Result<Hosting> {
        let threads = threads.max(1);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("troupe-actors".into())
            .spawn(move || {
                let system = System::new();
                let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
                let handles = arbiters.iter().map(Arbiter::handle).collect::<Vec<_>>();
                let _ = tx.send((System::current(), handles));
                // The arbiters live until the system stops.
                let _keep = arbiters;
                let _ = system.run();
            })?;
        let (system, arbiters) = rx
            .recv()
            .map_err(|_| io::Error::other("the actor system thread failed to start"))?;
        Ok(Hosting {
            system,
            arbiters,
            servers: Mutex::new(Vec::new()),
            table: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<ActorId, LocalActor>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Constructs an instance on its arbiter ([`arbiter_index`]) and adds it
    /// to the table, replacing (and stopping) an older incarnation.
    pub(crate) async fn start(
        &self,
        actor_type: Arc<dyn DynActorType>,
        args: Vec<u8>,
        cx: ActorContext,
        events: HostEvents,
    ) -> Result<(), String> {
        let (id, incarnation) = (cx.id, cx.incarnation);
        let arbiter = &self.arbiters[arbiter_index(id, self.arbiters.len())];
        let (tx, rx) = oneshot::channel();
        let sent = arbiter.spawn_fn(move || {
            actix_rt::spawn(async move {
                let _ = tx.send(actor_type.start(args, cx, events).await);
            });
        });
        if !sent {
            return Err("the node is shutting down".into());
        }
        let started = rx
            .await
            .map_err(|_| "the constructor's arbiter stopped".to_string())??;
        let replaced = self.table().insert(
            id,
            LocalActor {
                incarnation,
                addr: started.addr,
            },
        );
        if let Some(old) = replaced {
            old.addr.stop();
            tracing::info!(target: INSTANCE_LOG, actor = %id, incarnation = old.incarnation, "instance stopped");
        }
        tracing::info!(target: INSTANCE_LOG, actor = %id, incarnation, "instance started");
        self.changes.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Stops the instance of `actor`, if any (only `incarnation`, when
    /// given).
    pub(crate) fn stop(&self, actor: ActorId, incarnation: Option<u64>) {
        let removed = {
            let mut table = self.table();
            match table.get(&actor) {
                Some(local) if incarnation.is_none_or(|i| i == local.incarnation) => {
                    table.remove(&actor)
                }
                _ => None,
            }
        };
        if let Some(local) = removed {
            local.addr.stop();
            tracing::info!(target: INSTANCE_LOG, %actor, incarnation = local.incarnation, "instance stopped");
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Sends a raw call to `actor`'s instance if it is at least
    /// `incarnation` (the remote-call path: no address clone); `Err` gives
    /// the call back when there is no such instance.
    pub(crate) fn send_raw(
        &self,
        actor: ActorId,
        incarnation: u64,
        call: crate::actor::RawCall,
    ) -> Result<actix::dev::RecipientRequest<crate::actor::RawCall>, crate::actor::RawCall> {
        let table = self.table();
        match table.get(&actor) {
            Some(local) if local.incarnation >= incarnation => Ok(local.addr.raw.send(call)),
            _ => Err(call),
        }
    }

    /// Sends an in-process untyped call (see [`AnyCall`]); `Err` gives it
    /// back when there is no such instance.
    pub(crate) fn send_any(
        &self,
        actor: ActorId,
        incarnation: u64,
        call: crate::actor::AnyCall,
    ) -> Result<actix::dev::RecipientRequest<crate::actor::AnyCall>, crate::actor::AnyCall> {
        let table = self.table();
        match table.get(&actor) {
            Some(local) if local.incarnation >= incarnation => Ok(local.addr.any.send(call)),
            _ => Err(call),
        }
    }

    /// Opens a stream on `actor`'s instance; `Err` gives the call back when
    /// there is no such instance.
    pub(crate) fn send_stream(
        &self,
        actor: ActorId,
        incarnation: u64,
        call: crate::actor::RawStream,
    ) -> Result<actix::dev::RecipientRequest<crate::actor::RawStream>, crate::actor::RawStream>
    {
        let table = self.table();
        match table.get(&actor) {
            Some(local) if local.incarnation >= incarnation => Ok(local.addr.stream.send(call)),
            _ => Err(call),
        }
    }

    /// The typed address of `actor`'s instance if it is an `A` of at least
    /// `incarnation`.
    pub(crate) fn typed<A: crate::actor::Actor>(
        &self,
        actor: ActorId,
        incarnation: u64,
    ) -> Option<actix::Addr<Host<A>>> {
        let table = self.table();
        let local = table.get(&actor)?;
        if local.incarnation < incarnation {
            return None;
        }
        local.addr.typed::<A>().cloned()
    }

    /// What runs here: actor and incarnation.
    pub(crate) fn running(&self) -> Vec<(ActorId, u64)> {
        self.table()
            .iter()
            .map(|(id, local)| (*id, local.incarnation))
            .collect()
    }

    /// A receiver that sees every change of the table.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Starts one RPC server per arbiter, on that arbiter's thread, each
    /// listening on `ip` (any free port) and made by `make`; returns their
    /// addresses in arbiter order.
    pub(crate) async fn serve_on_arbiters(
        &self,
        ip: IpAddr,
        make: impl Fn() -> RpcServer,
    ) -> io::Result<Vec<String>> {
        let mut addrs = Vec::new();
        for arbiter in &self.arbiters {
            let listener = std::net::TcpListener::bind((ip, 0))?;
            listener.set_nonblocking(true)?;
            addrs.push(listener.local_addr()?.to_string());
            let server = make();
            let (tx, rx) = oneshot::channel();
            let sent = arbiter.spawn_fn(move || {
                let served = tokio::net::TcpListener::from_std(listener).map(|l| server.serve(l));
                let _ = tx.send(served);
            });
            if !sent {
                return Err(io::Error::other("an actor arbiter stopped"));
            }
            let handle = rx
                .await
                .map_err(|_| io::Error::other("an actor arbiter stopped"))??;
            self.servers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(handle);
        }
        Ok(addrs)
    }

    /// Stops every instance and the arbiters.
    pub(crate) fn shutdown(&self) {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let all: Vec<LocalActor> = self.table().drain().map(|(_, l)| l).collect();
        for local in all {
            local.addr.stop();
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        self.system.stop();
    }
}
