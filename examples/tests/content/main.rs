//! The content-understanding pipeline over HTTP on one node embedded in
//! this test process, on the real weights (fetched by the script if
//! missing): classes, the face branch, the request checks, and batching.

#[allow(dead_code)]
#[path = "../../../serve/tests/serve/http.rs"]
mod http;
#[allow(dead_code)]
#[path = "../vision/support.rs"]
mod vision_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use troupe::serve::{config, declarative, DeploymentHandle, ProxyConfig, ServeRoles};
use troupe_examples::content::stages::{Classifier, Classify, Rgb};
use troupe_examples::content::{self};

struct Pipeline {
    runtime: tokio::runtime::Runtime,
    http: String,
    _node: troupe::Node,
    _roles: ServeRoles,
    _dir: tempfile::TempDir,
}

const MAX_BODY: usize = 1024 * 1024;

/// The node, with the pipeline RUNNING (batches wait up to 50 ms).
fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| {
        vision_support::model_files();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let catalog = content::catalog();
        let (node, roles) = runtime.block_on(async {
            let mut config = troupe::NodeConfig::new(
                troupe::Role::Head,
                troupe::core::rpc::ClusterToken::new("content-test").unwrap(),
                dir.path(),
            );
            config.resources = troupe::prelude::Resources::new().with_cpus(2.0).unwrap();
            let node = troupe::Node::start(config, catalog.registry()).await.unwrap();
            let proxy = ProxyConfig {
                listen: "127.0.0.1:0".into(),
                max_body_bytes: MAX_BODY,
                request_timeout: Duration::from_secs(120),
                ..ProxyConfig::default()
            };
            let roles = troupe::serve::start(&node, Some(proxy), None).unwrap();
            let serve = config::parse_yaml(
                "applications:\n  - name: content\n    app: content\n    args: {batch_wait_timeout_ms: 50, max_image_bytes: 600000}\n",
            )
            .unwrap();
            let done = declarative::apply(&node.cluster(), &catalog, &serve)
                .await
                .unwrap();
            declarative::wait_running(
                &node.cluster(),
                &done.versions,
                Duration::from_secs(120),
                |_| {},
            )
            .await
            .unwrap();
            (node, roles)
        });
        Pipeline {
            http: roles.proxy_addr().unwrap().to_string(),
            runtime,
            _node: node,
            _roles: roles,
            _dir: dir,
        }
    })
}

/// POST `body` with `content_type`: status and body.
fn post(content_type: &str, body: &[u8]) -> (u16, String) {
    let header = format!("content-type: {content_type}");
    let r = http::request_to(&pipeline().http, "POST", "/", body, &[&header]);
    (r.status, r.body)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(vision_support::fixture_path(name)).unwrap()
}

fn answer(content_type: &str, body: &[u8]) -> Value {
    let (status, text) = post(content_type, body);
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

const CATS: &[&str] = &["Egyptian cat", "tabby", "tiger cat"];

#[test]
fn a_cat_photo_is_a_cat_by_both_models() {
    let a = answer("image/jpeg", &fixture_bytes("chelsea.jpg"));
    let object = a["object"].as_str().unwrap();
    assert!(CATS.contains(&object), "{a}");
    assert!(a["score"].as_f64().unwrap() > 0.3, "{a}");
    assert_eq!(a["top5"].as_array().unwrap().len(), 5);
    assert_eq!(a["boxes"], json!([]));
    for model in ["mobilenet_v2", "efficientnet_lite0"] {
        let label = a["models"][model]["object"].as_str().unwrap();
        assert!(CATS.contains(&label), "{model}: {a}");
    }
    for stage in ["download", "preprocess", "detect", "classify", "total"] {
        assert!(a["timings_ms"][stage].is_number(), "{stage}: {a}");
    }
}

#[test]
fn coffee_in_base64_is_espresso() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(fixture_bytes("coffee.jpg"));
    let body = serde_json::to_vec(&json!({ "image_base64": b64 })).unwrap();
    let a = answer("application/json", &body);
    assert_eq!(a["object"], "espresso", "{a}");
}

#[test]
fn a_face_takes_the_face_branch_with_its_box() {
    let a = answer("image/jpeg", &fixture_bytes("astronaut.jpg"));
    assert_eq!(a["object"], "face", "{a}");
    let boxes = a["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), 1, "{a}");
    let b: Vec<f64> = boxes[0]["box"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    // Around the astronaut's face in the 300x300 fixture (recorded once).
    let reference = [179.6, 60.8, 268.2, 173.7];
    for (got, want) in b.iter().zip(reference) {
        assert!(
            (got - want).abs() < 15.0,
            "box {b:?}, reference {reference:?}"
        );
    }
    for [x, y] in boxes[0]["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()])
    {
        assert!(
            x > b[0] && x < b[2] && y > b[1] && y < b[3],
            "landmark outside the box"
        );
    }
}

#[test]
fn bad_requests_get_clear_4xx() {
    let (status, body) = post("text/plain", b"this is not an image");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a JPEG or PNG"), "{body}");
    let (status, body) = post("image/gif", b"GIF89a....");
    assert_eq!(status, 400, "{body}");
    let (status, _) = post("image/jpeg", &vec![0xFF; MAX_BODY + 1]);
    assert_eq!(status, 413);
    // Within the proxy's limit but over the downloader's.
    let (status, body) = post("image/jpeg", &vec![0xFF; 700_000]);
    assert_eq!(status, 413, "{body}");
    let url = json!({ "url": "http://example.com/cat.jpg" }).to_string();
    let (status, body) = post("application/json", url.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("allow-list"), "{body}");
    let (status, body) = post("application/json", br#"{"uri": "x"}"#);
    assert_eq!(status, 400, "{body}");
}

/// Serves `body` with `content_type` to every GET on a free loopback port.
fn serve_file(body: Vec<u8>, content_type: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    addr
}

#[test]
fn images_are_fetched_by_url_from_allowed_hosts() {
    let addr = serve_file(fixture_bytes("chelsea.jpg"), "image/jpeg");
    let body = json!({ "url": format!("http://{addr}/chelsea.jpg") }).to_string();
    let a = answer("application/json", body.as_bytes());
    assert!(CATS.contains(&a["object"].as_str().unwrap()), "{a}");
    let page = serve_file(b"<html>not an image</html>".to_vec(), "text/html");
    let body = json!({ "url": format!("http://{page}/") }).to_string();
    let (status, text) = post("application/json", body.as_bytes());
    assert_eq!(status, 400, "{text}");
}

#[test]
fn concurrent_calls_are_batched_and_each_gets_its_own_answer() {
    let p = pipeline();
    let crop = |name: &str| {
        let image =
            troupe_examples::vision::preprocess::resize_and_crop(&vision_support::fixture(name));
        Rgb {
            width: image.width(),
            height: image.height(),
            pixels: image.into_raw(),
        }
    };
    let (cat, coffee) = (crop("chelsea.jpg"), crop("coffee.jpg"));
    let handle = DeploymentHandle::<Classifier>::new("content", "mobilenet_v2");
    let answers = p.runtime.block_on(async {
        let calls = (0..8).map(|i| {
            let handle = handle.clone();
            let image = if i % 2 == 0 {
                cat.clone()
            } else {
                coffee.clone()
            };
            async move { handle.call(Classify(image)).await.unwrap().unwrap() }
        });
        futures::future::join_all(calls).await
    });
    for (i, a) in answers.iter().enumerate() {
        let best = content::combine::top_k(&a.probs, 1)[0].label;
        match i % 2 {
            0 => assert!(CATS.contains(&best), "call {i}: {best}"),
            _ => assert_eq!(best, "espresso", "call {i}"),
        }
    }
    let largest = answers.iter().map(|a| a.batch_size).max().unwrap();
    assert!(
        largest > 1,
        "no batch larger than 1: {:?}",
        answers.iter().map(|a| a.batch_size).collect::<Vec<_>>()
    );
    // The batcher's metric saw it too.
    let page = troupe::serve::metrics::metrics().render(None);
    let value = |series: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in the metrics"))
    };
    let sum = value("troupe_serve_batch_size_sum{batcher=\"mobilenet_v2/mobilenet_v2\"}");
    let count = value("troupe_serve_batch_size_count{batcher=\"mobilenet_v2/mobilenet_v2\"}");
    assert!(sum > count, "batches of one only: sum {sum}, count {count}");
}
