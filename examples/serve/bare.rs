//! `troupe-bare-http`: the serving benchmarks' limit — a bare actix-web
//! server answering every request with the same short string as the
//! `noop` application, on the same port and worker count as the proxy.

use actix_web::{web, App, HttpResponse, HttpServer};

fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new().default_service(web::to(|| async {
                HttpResponse::Ok()
                    .content_type("text/plain; charset=utf-8")
                    .body("ok")
            }))
        })
        .bind(&listen)?;
        println!("bare actix-web listening on {listen}");
        server.run().await
    })
}
