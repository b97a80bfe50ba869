//! Ray Serve 2.60's own Grafana dashboards against a Troupe cluster of
//! node processes: the series and label names their panels and template
//! variables query are read out of Ray's pinned wheel
//! (`examples/grafana/ray_panels.py`, run in the Ray CLI test's venv);
//! traffic goes through two nodes' proxies (answers and errors); every
//! node's `/metrics` is scraped; each queried series must be exported with
//! the type its name implies and the labels its query uses, except those
//! `examples/grafana/README.md` lists as not exported, which must be
//! absent (no fake zeros).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::operator::{ok, troupe};
use crate::raycli::{ray_command, ray_venv, run_bounded, text};
use crate::serve::{get, post};
use crate::support::{wait_until, TestCluster};

/// One sample of a `/metrics` page.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape of every node: the samples and each family's `# TYPE`.
#[derive(Debug, Default)]
struct Scrape {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Scrape {
    fn add_page(&mut self, page: &str) {
        for line in page.lines() {
            if let Some(typed) = line.strip_prefix("# TYPE ") {
                let mut words = typed.split_whitespace();
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    self.types.insert(name.to_owned(), kind.to_owned());
                }
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                self.samples.push(parse_sample(line));
            }
        }
    }

    /// The samples named `name` carrying every label in `labels`, each
    /// with a non-empty value.
    fn with_labels<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [String],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|l| s.labels.get(l).is_some_and(|v| !v.is_empty()))
        })
    }

    /// The sum of the samples named `name` whose labels include `matching`.
    fn sum(&self, name: &str, matching: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && matching
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// The family a sample name belongs to, and the type it must have:
    /// `_total` a counter, `_bucket`/`_sum`/`_count` of a histogram, else a
    /// gauge (the rule of Ray's exporter; one gauge of Ray's own is named
    /// `..._total`).
    fn family_of(&self, name: &str) -> (String, &'static str) {
        // Ray's reporter agent declares `node_mem_total` a gauge: its
        // `_total` is part of its name, not the counter suffix.
        const GAUGES_NAMED_TOTAL: &[&str] = &["ray_node_mem_total"];
        if name.ends_with("_total") && !GAUGES_NAMED_TOTAL.contains(&name) {
            return (name.to_owned(), "counter");
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self.types.get(base).map(String::as_str) == Some("histogram") {
                    return (base.to_owned(), "histogram");
                }
                if suffix == "_bucket" {
                    return (base.to_owned(), "histogram");
                }
            }
        }
        (name.to_owned(), "gauge")
    }
}

/// `name{a="x",b="y"} 1` or `name 1`.
fn parse_sample(line: &str) -> Sample {
    let (head, value) = line.rsplit_once(' ').expect("a sample line has a value");
    let value = value.parse().unwrap_or(f64::NAN);
    let Some((name, rest)) = head.split_once('{') else {
        return Sample {
            name: head.to_owned(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if label.is_empty() || label.starts_with('}') {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(label.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// The first-column names of the table under `heading` in
/// `examples/grafana/README.md` (rows like ``| `name` | why |``).
fn documented(readme: &str, heading: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("examples/grafana/README.md has no section {heading:?}"));
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// What Ray's dashboards query, as `ray_panels.py` prints it.
fn ray_dashboards(home: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/ray_panels.py");
    let venv = ray_venv();
    let out = run_bounded(
        ray_command(&venv, "python", home).arg(&script),
        "ray_panels.py",
    );
    assert!(
        out.status.success(),
        "ray_panels.py failed:\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// One series a dashboard query uses, with the labels it needs.
#[derive(Debug)]
struct Queried {
    dashboard: String,
    name: String,
    labels: Vec<String>,
    query: String,
}

const CONFIG: &str = "applications:
  - name: chain
    route_prefix: /chain
    app: chain
    deployments:
      - {name: normalize, num_replicas: 1, actor_options: {num_cpus: 0.25}}
      - {name: count, num_replicas: 1, actor_options: {num_cpus: 0.25}}
      - {name: pipeline, num_replicas: 1, actor_options: {num_cpus: 0.25}}
  - name: select
    route_prefix: /select
    app: select
    deployments:
      - {name: fast, num_replicas: 1, actor_options: {num_cpus: 0.25}}
      - {name: thorough, num_replicas: 1, actor_options: {num_cpus: 0.25}}
      - {name: router, num_replicas: 1, actor_options: {num_cpus: 0.25}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rays_serve_dashboards_find_every_series_they_query_on_a_troupe_cluster() {
    let mut cluster = TestCluster::serve_nodes(2);
    let home = cluster.tmp.path().join("ray-home");
    std::fs::create_dir_all(&home).unwrap();

    // What Ray's dashboards query, and what the docs say is not exported.
    let dashboards = ray_dashboards(&home);
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/README.md"))
            .unwrap();
    let not_exported = documented(&readme, "Ray series Troupe does not export");
    let scrape_time = documented(&readme, "Labels set at scrape time");
    assert!(not_exported.len() >= 20, "{not_exported:?}");
    assert!(scrape_time.contains("ray_io_cluster"), "{scrape_time:?}");
    let mut queried = Vec::new();
    let mut global_labels = BTreeMap::new();
    for dashboard in dashboards["dashboards"].as_array().unwrap() {
        let name = dashboard["name"].as_str().unwrap().to_owned();
        let filters: Vec<String> = dashboard["global_filter_labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .filter(|l| !scrape_time.contains(l))
            .collect();
        global_labels.insert(name.clone(), filters);
        for query in dashboard["queries"].as_array().unwrap() {
            for series in query["series"].as_array().unwrap() {
                queried.push(Queried {
                    dashboard: name.clone(),
                    name: series["name"].as_str().unwrap().to_owned(),
                    labels: series["labels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| l.as_str().unwrap().to_owned())
                        .filter(|l| !scrape_time.contains(l))
                        .collect(),
                    query: format!("{}: {}", query["where"], query["expr"]),
                });
            }
        }
    }
    assert_eq!(global_labels.len(), 2, "Serve and Serve Deployment");
    let names: BTreeSet<&str> = queried.iter().map(|q| q.name.as_str()).collect();
    for documented in &not_exported {
        assert!(
            names.contains(documented.as_str()),
            "examples/grafana/README.md lists {documented}, which Ray's dashboards do not query"
        );
    }
    let expected: BTreeSet<&str> = names
        .iter()
        .copied()
        .filter(|n| !not_exported.contains(*n))
        .collect();
    assert!(expected.len() >= 14, "{expected:?}");

    // Two applications, then traffic through both nodes' proxies: answers
    // and errors (an unknown `?model=` is the select router's 400).
    let config = cluster.tmp.path().join("serve.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let out = ok(troupe(
        &["serve", "deploy", config.to_str().unwrap()],
        &cluster.nodes[0].addr,
    ));
    assert!(
        out.contains("chain: RUNNING") && out.contains("select: RUNNING"),
        "{out}"
    );
    const ANSWERED: usize = 5;
    const FAILED: usize = 2;
    for node in &cluster.nodes {
        let routes = format!("{} routes /chain", node.http);
        wait_until(&routes, Duration::from_secs(10), || async {
            post(&node.http, "/chain", "x").is_ok_and(|(c, _)| c == 200)
        })
        .await;
        for _ in 0..ANSWERED {
            let (code, body) = post(&node.http, "/chain", " One TWO ").unwrap();
            assert_eq!(code, 200, "{body}");
        }
        for _ in 0..FAILED {
            let (code, body) = get(&node.http, "/select?model=bogus").unwrap();
            assert_eq!(code, 400, "{body}");
        }
    }

    // Every node scraped until each expected series is there and the six
    // replicas are healthy (the controller's gauges come with its rounds).
    let missing = |scrape: &Scrape| -> Vec<String> {
        queried
            .iter()
            .filter(|q| expected.contains(q.name.as_str()))
            .filter(|q| scrape.with_labels(&q.name, &q.labels).next().is_none())
            .map(|q| format!("{} with labels {:?} ({})", q.name, q.labels, q.query))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let scrape = loop {
        let mut scrape = Scrape::default();
        for node in &cluster.nodes {
            let page = node.metrics().expect("every node serves /metrics");
            scrape.add_page(&page);
        }
        let mut missing = missing(&scrape);
        let healthy = scrape.sum("ray_serve_deployment_replica_healthy", &[]);
        if healthy != 6.0 {
            missing.push(format!("six healthy replicas (now {healthy})"));
        }
        if missing.is_empty() {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "Troupe does not export what Ray's dashboards query:\n{}",
            missing.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Types as Ray's exporter gives them; nothing fake for what Troupe
    // does not have.
    for name in &expected {
        let (family, kind) = scrape.family_of(name);
        assert_eq!(
            scrape.types.get(&family).map(String::as_str),
            Some(kind),
            "{name}: Ray exports {family} as a {kind}"
        );
    }
    for name in &not_exported {
        assert!(
            !scrape.samples.iter().any(|s| &s.name == name),
            "{name} is listed as not exported but a node exports it"
        );
    }
    // The dashboards' own filters (application, deployment, replica on
    // the Serve Deployment one) name labels the series carry.
    for (dashboard, labels) in &global_labels {
        for label in labels {
            assert!(
                queried
                    .iter()
                    .filter(|q| &q.dashboard == dashboard && expected.contains(q.name.as_str()))
                    .any(|q| scrape
                        .with_labels(&q.name, std::slice::from_ref(label))
                        .next()
                        .is_some()),
                "{dashboard}'s filter on {label} matches no series"
            );
        }
    }

    // The numbers are the traffic's.
    let nodes = cluster.nodes.len() as f64;
    let answered = ANSWERED as f64 * nodes;
    let failed = FAILED as f64 * nodes;
    let chain_ok = [("application", "chain"), ("status_code", "200")];
    assert!(scrape.sum("ray_serve_num_http_requests_total", &chain_ok) >= answered);
    assert!(
        scrape.sum(
            "ray_serve_num_http_error_requests_total",
            &[("application", "select"), ("error_code", "400")]
        ) >= failed
    );
    assert!(
        scrape.sum(
            "ray_serve_deployment_request_counter_total",
            &[("deployment", "pipeline"), ("route", "/chain")]
        ) >= answered
    );
    assert!(
        scrape.sum(
            "ray_serve_deployment_error_counter_total",
            &[
                ("deployment", "router"),
                ("route", "/select"),
                ("exception_type", "BadRequest")
            ]
        ) >= failed
    );
    assert!(
        scrape.sum(
            "ray_serve_http_request_latency_ms_count",
            &[("application", "chain"), ("method", "POST")]
        ) >= answered
    );
    assert_eq!(
        scrape.sum("ray_serve_deployment_replica_healthy", &[]),
        6.0,
        "six running replicas: {:?}",
        scrape
            .samples
            .iter()
            .filter(|s| s.name == "ray_serve_deployment_replica_healthy")
            .collect::<Vec<_>>()
    );
    assert!(scrape.sum("ray_serve_controller_num_control_loops", &[]) >= 1.0);
    assert_eq!(
        scrape
            .samples
            .iter()
            .filter(|s| s.name == "ray_serve_controller_control_loop_duration_s")
            .count(),
        1,
        "only the controller's node reports its rounds"
    );
    assert_eq!(
        scrape
            .samples
            .iter()
            .filter(|s| s.name == "ray_serve_num_ongoing_http_requests")
            .count(),
        cluster.nodes.len(),
        "one ongoing-requests gauge per node's proxy"
    );
    eprintln!(
        "{} series Ray's dashboards query are exported, {} documented as not applicable",
        expected.len(),
        not_exported.len()
    );
    for node in &mut cluster.nodes {
        node.kill();
    }
}
