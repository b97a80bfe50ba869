//! Tests of `parse.rs`: a full scenario, the defaults, loading a file.
//! The errors are in `parse_error_tests.rs`.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::scenario::{
    ActorWorkload, FaultKind, FaultSpec, PartitionMode, RandomFaults, TargetRole, TargetSpec,
    TimedFault,
};

pub(super) const SERVE_YAML: &str = "\
applications:
  - name: chain
    route_prefix: /chain
    app: chain
    deployments:
      - {name: normalize, num_replicas: 3}
";

const FULL: &str = r#"
name: kill-leader
description: "Kill the GCS leader"
duration_s: 120
seed: 7
cluster:
  binary: troupe-chain
  nodes: 4
  gcs_members: 3
  num_cpus: 2
  node_ttl_s: 1.5
  actor_threads: 2
  network: namespaces
  extra_args: ["--log-level", "debug"]
serve_config: configs/serve.yaml
workloads:
  - name: chain
    kind: http
    path: /chain
    method: get
    body: "hello"
    rate: 300
    timeout_s: 2
    client: fixed
    proxies: [1, 2]
  - {name: kv, kind: gcs, rate: 50, clients: 8, keys: 5}
faults:
  timeline:
    - {at_s: 30, kind: kill, target: gcs_leader, heal_after_s: 10, class: kill-leader}
    - {at_s: 60, kind: partition, mode: one_way, target: "node:3"}
    - at_s: 70
      kind: degrade
      target: hosting:chain/normalize
      count: 2
      within_ms: 500
      delay_ms: 250
      jitter_ms: 20
      loss_pct: 1.5
      heal_after_s: 5
    - at_s: 80
      kind: update
      app: chain
      deployment: normalize
      set: {user_config: {v: 2}, num_replicas: 2}
      app_args: {mode: fast}
  random:
    every_s: [10, 20]
    from_s: 15
    until_s: 100
    choices:
      - {kind: pause, target: gcs_majority, heal_after_s: 3}
      - {kind: wipe, target: any, count: 2}
checks:
  min_success: 0.99
  max_gap_s: 2.5
  converge_within_s: 30
  window_tail_s: 0
  linearizable: true
  min_known_gcs_ops: 10
  no_lost_writes: false
  single_placement: false
  no_panics: false
"#;

/// A scenario that is valid except for what a test appends or changes.
pub(super) const BASE: &str = "\
name: t
duration_s: 100
workloads:
  - {name: w, kind: http, path: /w, rate: 10}
";

pub(super) fn parse(text: &str) -> Result<Scenario, ConfigError> {
    parse_yaml(text, Path::new("/nonexistent-base"))
}

/// Each problem as `path: message`.
pub(super) fn errors(text: &str) -> Vec<String> {
    let err = parse(text).expect_err("the scenario should be refused");
    err.issues().iter().map(ToString::to_string).collect()
}

fn spec(kind: FaultKind, role: TargetRole, count: usize, class: &str) -> FaultSpec {
    FaultSpec {
        kind,
        target: TargetSpec {
            role,
            count,
            within_ms: 0,
        },
        heal_after_s: None,
        class: class.into(),
    }
}

#[test]
fn a_full_scenario_parses_to_every_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("configs")).unwrap();
    std::fs::write(dir.path().join("configs/serve.yaml"), SERVE_YAML).unwrap();
    let got = parse_yaml(FULL, dir.path()).unwrap();

    let mut degrade = spec(
        FaultKind::Degrade {
            delay_ms: 250,
            jitter_ms: 20,
            loss_pct: 1.5,
        },
        TargetRole::Hosting("chain/normalize".into()),
        2,
        "degrade-hosting:chain/normalize",
    );
    degrade.target.within_ms = 500;
    degrade.heal_after_s = Some(5.0);
    let mut kill = spec(FaultKind::Kill, TargetRole::GcsLeader, 1, "kill-leader");
    kill.heal_after_s = Some(10.0);
    let mut pause = spec(
        FaultKind::Pause,
        TargetRole::GcsMajority,
        1,
        "pause-gcs_majority",
    );
    pause.heal_after_s = Some(3.0);
    let set = json!({"user_config": {"v": 2}, "num_replicas": 2});
    let expected = Scenario {
        name: "kill-leader".into(),
        description: "Kill the GCS leader".into(),
        duration_s: 120.0,
        seed: 7,
        cluster: ClusterSpec {
            binary: Some("troupe-chain".into()),
            nodes: 4,
            gcs_members: 3,
            num_cpus: 2.0,
            node_ttl_s: 1.5,
            actor_threads: 2,
            network: NetworkMode::Namespaces,
            extra_args: vec!["--log-level".into(), "debug".into()],
        },
        serve_config: Some(serde_yaml_ng::from_str(SERVE_YAML).unwrap()),
        workloads: vec![
            Workload::Http(HttpWorkload {
                name: "chain".into(),
                path: "/chain".into(),
                method: "GET".into(),
                body: "hello".into(),
                rate: 300.0,
                timeout_s: 2.0,
                client: ClientMode::Fixed,
                proxies: vec![1, 2],
            }),
            Workload::Gcs(GcsWorkload {
                name: "kv".into(),
                rate: 50.0,
                clients: 8,
                keys: 5,
                timeout_s: 3.0,
            }),
        ],
        faults: FaultPlan {
            timeline: vec![
                TimedFault {
                    at_s: 30.0,
                    fault: kill,
                },
                TimedFault {
                    at_s: 60.0,
                    fault: spec(
                        FaultKind::Partition {
                            mode: PartitionMode::OneWay,
                        },
                        TargetRole::Node(3),
                        1,
                        "partition-one_way-node:3",
                    ),
                },
                TimedFault {
                    at_s: 70.0,
                    fault: degrade,
                },
                TimedFault {
                    at_s: 80.0,
                    fault: spec(
                        FaultKind::Update {
                            app: "chain".into(),
                            deployment: "normalize".into(),
                            set: set.as_object().unwrap().clone(),
                            app_args: Some(json!({"mode": "fast"})),
                        },
                        TargetRole::None,
                        1,
                        "update-chain/normalize",
                    ),
                },
            ],
            random: Some(RandomFaults {
                every_s: (10.0, 20.0),
                from_s: 15.0,
                until_s: 100.0,
                choices: vec![pause, spec(FaultKind::Wipe, TargetRole::Any, 2, "wipe-any")],
            }),
        },
        checks: Checks {
            min_success: 0.99,
            max_gap_s: Some(2.5),
            converge_within_s: 30.0,
            window_tail_s: 0.0,
            linearizable: true,
            min_known_gcs_ops: 10,
            no_lost_writes: false,
            single_placement: false,
            no_panics: false,
        },
    };
    assert_eq!(got, expected);
}

#[test]
fn a_minimal_scenario_gets_every_default() {
    let got = parse(BASE).unwrap();
    let expected = Scenario {
        name: "t".into(),
        description: String::new(),
        duration_s: 100.0,
        seed: 1,
        cluster: ClusterSpec::default(),
        serve_config: None,
        workloads: vec![Workload::Http(HttpWorkload {
            name: "w".into(),
            path: "/w".into(),
            method: "POST".into(),
            body: String::new(),
            rate: 10.0,
            timeout_s: 5.0,
            client: ClientMode::Balanced,
            proxies: Vec::new(),
        })],
        faults: FaultPlan::default(),
        // No gcs workload: the GCS checks are off.
        checks: Checks {
            linearizable: false,
            min_known_gcs_ops: 0,
            ..Checks::default()
        },
    };
    assert_eq!(got, expected);
}

#[test]
fn defaults_that_depend_on_other_fields() {
    let text = "\
name: t
duration_s: 100
cluster: {nodes: 2}
workloads:
  - {name: kv, kind: gcs, rate: 10}
faults:
  random:
    every_s: [5, 5]
    choices: [{kind: partition, mode: isolate, target: gcs_leader}]
checks: {converge_within_s: 30}
";
    let s = parse(text).unwrap();
    assert_eq!(s.cluster.gcs_members, 2);
    let expected = Workload::Gcs(GcsWorkload {
        name: "kv".into(),
        rate: 10.0,
        clients: 4,
        keys: 3,
        timeout_s: 3.0,
    });
    assert_eq!(s.workloads, [expected]);
    assert!(s.checks.linearizable);
    assert_eq!(s.checks.min_known_gcs_ops, 100);
    let random = s.faults.random.unwrap();
    assert_eq!((random.from_s, random.until_s), (10.0, 70.0));
    assert_eq!(random.choices[0].class, "partition-isolate-gcs_leader");

    // until_s defaults to at least from_s.
    let s = parse(&text.replace("converge_within_s: 30", "converge_within_s: 95")).unwrap();
    assert_eq!(s.faults.random.unwrap().until_s, 10.0);
}

#[test]
fn load_reads_the_file_and_resolves_paths_next_to_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("serve.yaml"), SERVE_YAML).unwrap();
    let text = format!("{BASE}serve_config: serve.yaml\n");
    let file = dir.path().join("scenario.yaml");
    std::fs::write(&file, &text).unwrap();
    let (scenario, read) = load(&file).unwrap();
    assert_eq!(read, text);
    assert_eq!(
        scenario.serve_config.unwrap()["applications"][0]["name"],
        "chain"
    );

    let missing = dir.path().join("missing.yaml");
    assert_eq!(
        load(&missing).unwrap_err().to_string(),
        format!(
            "cannot read {}: No such file or directory (os error 2)",
            missing.display()
        )
    );
}

#[test]
fn an_actor_workload_gets_its_defaults_and_refuses_other_kinds_fields() {
    let text = "name: t\nduration_s: 10\nworkloads:\n  - {name: a, kind: actor, rate: 20}\n  - {name: b, kind: actor, rate: 5, actors: 2, max_restarts: 1, max_task_retries: -1, timeout_s: 2}\n";
    let s = parse(text).unwrap();
    assert_eq!(
        s.workloads,
        [
            Workload::Actor(ActorWorkload {
                name: "a".into(),
                rate: 20.0,
                actors: 3,
                timeout_s: 5.0,
                max_restarts: -1,
                max_task_retries: 0,
            }),
            Workload::Actor(ActorWorkload {
                name: "b".into(),
                rate: 5.0,
                actors: 2,
                timeout_s: 2.0,
                max_restarts: 1,
                max_task_retries: -1,
            }),
        ]
    );
    let bad = "name: t\nduration_s: 10\nworkloads:\n  - {name: a, kind: actor, rate: 20, path: /x, max_restarts: -2}\n  - {name: h, kind: http, path: /h, rate: 1, actors: 2}\n";
    assert_eq!(
        super::tests::errors(bad),
        [
            "workloads[0].path: `path` applies only to http workloads",
            "workloads[0].max_restarts: must be an integer >= -1 (-1: no limit), got -2",
            "workloads[1].actors: `actors` applies only to actor workloads",
        ]
    );
}
