//! [`HttpThread`]: an actix-web server on an actix system of its own
//! thread(s), so the node's tokio runtime and actor threads never run HTTP
//! parsing. Used by the proxy and the admin server.

use std::io;
use std::net::SocketAddr;

use actix_web::web::ServiceConfig;
use actix_web::{App, HttpServer};

/// A running server.
pub(crate) struct HttpThread {
    addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpThread {
    /// Binds `listen` (`what` names the server in errors) and serves the
    /// routes `configure` adds, with `workers` threads.
    pub(crate) fn start(
        what: &str,
        listen: &str,
        workers: usize,
        configure: impl Fn(&mut ServiceConfig) + Send + Clone + 'static,
    ) -> io::Result<HttpThread> {
        let listener = std::net::TcpListener::bind(listen).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the {what} cannot listen on {listen}: {e}"),
            )
        })?;
        let addr = listener.local_addr()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("troupe-{}", what.replace(' ', "-")))
            .spawn(move || {
                let system = actix_rt::System::new();
                let started = system.block_on(async move {
                    let server = HttpServer::new(move || App::new().configure(configure.clone()))
                        .workers(workers.max(1))
                        .disable_signals()
                        .listen(listener)?
                        .run();
                    Ok::<_, io::Error>(server)
                });
                match started {
                    Ok(server) => {
                        let _ = tx.send(Ok(server.handle()));
                        let _ = system.block_on(server);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        let server = rx
            .recv()
            .map_err(|_| io::Error::other(format!("the {what} thread stopped")))??;
        Ok(HttpThread {
            addr,
            server,
            thread: Some(thread),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and joins the
    /// thread.
    pub(crate) async fn stop(mut self) {
        self.server.stop(true).await;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
