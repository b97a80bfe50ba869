//! A small HTTP/1.1 client over hyper: one pool of kept-alive connections
//! per address, and a one-shot `get` for probes. No retries, ever: a
//! failure is recorded as what it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::record::Outcome;

/// Idle connections older than this are dropped rather than reused: the
/// proxy (actix-web) closes idle keep-alive connections after 5 s, and a
/// request sent on a connection the server is closing would fail for
/// reasons that are the client's, not the cluster's.
const MAX_IDLE: Duration = Duration::from_secs(2);
/// At most this many idle connections are kept per address.
const MAX_POOLED: usize = 256;

type Sender = SendRequest<Full<Bytes>>;
/// Idle connections by address, each with when it went idle.
type IdleTable = HashMap<String, Vec<(Sender, Instant)>>;

/// Kept-alive connections by address.
#[derive(Clone, Default)]
pub struct Pool {
    idle: Arc<Mutex<IdleTable>>,
}

/// What a request needs.
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// Path and query.
    pub path: &'a str,
    /// The body.
    pub body: Bytes,
}

impl Pool {
    /// A new, empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    fn take(&self, addr: &str) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some((sender, since)) = list.pop() {
            if since.elapsed() < MAX_IDLE && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, addr: &str, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(addr.to_owned()).or_default();
        if list.len() < MAX_POOLED {
            list.push((sender, Instant::now()));
        }
    }

    /// Drops every idle connection to `addr` (its node died or restarted).
    pub fn forget(&self, addr: &str) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }

    /// Sends `request` to `addr` and waits for the whole answer until
    /// `deadline`; the status and body on a 2xx, else the failure.
    pub async fn send(
        &self,
        addr: &str,
        request: &Request<'_>,
        deadline: Instant,
    ) -> (Outcome, Bytes) {
        let mut sender = match self.take(addr) {
            Some(s) => s,
            None => match timeout_at(deadline, connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(_)) | Err(_) => return (Outcome::Connect, Bytes::new()),
            },
        };
        let http_request = match hyper::Request::builder()
            .method(request.method)
            .uri(request.path)
            .header(hyper::header::HOST, addr)
            .body(Full::new(request.body.clone()))
        {
            Ok(r) => r,
            Err(_) => return (Outcome::Broken, Bytes::new()),
        };
        let exchange = async {
            let response = sender.send_request(http_request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match timeout_at(deadline, exchange).await {
            Err(_) => (Outcome::Timeout, Bytes::new()),
            Ok(Err(_)) => (Outcome::Broken, Bytes::new()),
            Ok(Ok((status, body))) => {
                self.put(addr, sender);
                let outcome = if (200..300).contains(&status) {
                    Outcome::Ok
                } else {
                    Outcome::Status(status)
                };
                (outcome, body)
            }
        }
    }
}

async fn connect(addr: &str) -> std::io::Result<Sender> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One GET on a fresh connection: the status and body, or `None` on any
/// failure or after `within`.
pub async fn get(addr: &str, path: &str, within: Duration) -> Option<(u16, Bytes)> {
    send_json(addr, "GET", path, Vec::new(), within).await
}

/// One request with a JSON body on a fresh connection (the admin API's
/// PUT): the status and body, or `None` on any failure or after `within`.
pub async fn send_json(
    addr: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    within: Duration,
) -> Option<(u16, Bytes)> {
    let deadline = Instant::now() + within;
    let once = async {
        let mut sender = connect(addr).await.ok()?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    };
    timeout_at(deadline, once).await.ok().flatten()
}
