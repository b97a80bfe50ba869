//! [`start`]: the serve layer's roles on a node — the runtime (routers),
//! the serve controller (on GCS nodes; active while the member leads) and
//! the HTTP proxy.

use std::io;
use std::sync::{Arc, Mutex};

use troupe_worker::Node;

use crate::autoscale::MetricsStore;
use crate::proxy::{Proxy, ProxyConfig};
use crate::{reporter, runtime};

/// Serve's roles on one node; stop them before the node.
pub struct ServeRoles {
    proxy: Option<Proxy>,
    admin: Option<crate::admin::AdminServer>,
    controller: Option<tokio::task::JoinHandle<()>>,
    reporter: tokio::task::JoinHandle<()>,
}

/// Starts serve on `node`: the proxy (unless `proxy` is `None`), the admin
/// server with `/metrics` (unless `admin` is `None`), and, if the node
/// runs a GCS member, the serve controller.
pub fn start(
    node: &Node,
    proxy: Option<ProxyConfig>,
    admin: Option<crate::admin::AdminConfig>,
) -> io::Result<ServeRoles> {
    crate::records::follow(&node.cluster());
    let runtime = runtime::install(node.cluster());
    // Autoscaling reports: every node takes them (the controller reads
    // them where it runs) and sends its own routers' loads.
    let metrics = Arc::new(Mutex::new(MetricsStore::new()));
    let inbox = metrics.clone();
    node.extensions().register(
        reporter::REPORT,
        Arc::new(move |body: Vec<u8>| {
            let result = reporter::receive(&inbox, &body).map(|()| Vec::new());
            Box::pin(std::future::ready(result))
        }),
    );
    let reporter = tokio::spawn(reporter::run(runtime.clone(), node.id().to_string()));
    let controller = node.gcs_member().map(|member| {
        tokio::spawn(crate::controller::run(
            member.clone(),
            node.cluster(),
            node.id(),
            metrics.clone(),
        ))
    });
    let proxy = proxy
        .map(|config| Proxy::start(config, runtime))
        .transpose()?;
    let admin = admin
        .map(|config| {
            crate::admin::AdminServer::start(config, node.cluster(), node.gcs_member().cloned())
        })
        .transpose()?;
    Ok(ServeRoles {
        proxy,
        admin,
        controller,
        reporter,
    })
}

impl ServeRoles {
    /// The proxy's address, if it runs.
    pub fn proxy_addr(&self) -> Option<std::net::SocketAddr> {
        self.proxy.as_ref().map(Proxy::addr)
    }

    /// The admin server's address, if it runs.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().map(crate::admin::AdminServer::addr)
    }

    /// Drains the proxy (requests in flight finish) and stops the
    /// controller.
    pub async fn stop(mut self) {
        if let Some(admin) = self.admin.take() {
            admin.stop().await;
        }
        if let Some(proxy) = self.proxy.take() {
            proxy.stop().await;
        }
        if let Some(controller) = self.controller.take() {
            controller.abort();
        }
        self.reporter.abort();
    }
}
