//! The table `bench cluster` prints from its JSON results.

use super::kills;

pub(super) fn table(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let mut out = String::new();
    out.push_str(&format!(
        "nodes {} (gcs members {}, http proxies {}), {} cores, up in {:.1} s\n",
        r["nodes"],
        r["gcs_members"],
        r["http_nodes"],
        r["cores"],
        f(&r["up_s"])
    ));
    out.push_str(&format!(
        "spawn {} actors: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms\n",
        r["actors"],
        f(&r["spawn_per_s"]),
        f(&r["spawn_p50_ms"]),
        f(&r["spawn_p99_ms"])
    ));
    match r["deploy_s"].as_f64() {
        Some(s) => out.push_str(&format!(
            "deploy {} replicas: {s:.1} s to RUNNING\n",
            r["replicas"]
        )),
        None => out.push_str("deploy: skipped\n"),
    }
    for (label, key) in [("idle", "rss_idle"), ("loaded", "rss_loaded")] {
        let m = &r[key];
        out.push_str(&format!(
            "RSS {label}: sum {:.0} MiB, max {:.1} MiB, non-GCS mean {:.1} MiB, GCS members {}\n",
            f(&m["sum_mib"]),
            f(&m["max_mib"]),
            f(&m["mean_non_gcs_mib"]),
            m["gcs_members_mib"]
        ));
    }
    for (label, key) in [("empty", "idle_empty"), ("with the load", "idle_loaded")] {
        let m = &r[key];
        out.push_str(&format!(
            "idle CPU {label}: {:.3} cores in all, busiest GCS member {:.3} cores, {:.1} GCS writes/s\n",
            f(&m["all_cores"]),
            f(&m["gcs_member_max_cores"]),
            f(&m["gcs_writes_per_s"])
        ));
    }
    out.push_str(&format!(
        "spawn CPU: {:.2} ms per actor over all processes, busiest GCS member {:.1} s\n",
        f(&r["spawn_cpu_ms_per_actor"]),
        f(&r["spawn_busiest_gcs_member_cpu_s"])
    ));
    out.push_str(&kills::table_lines(&r["leader_kill"], &r["node_kill"]));
    for (label, key) in [
        ("spawns", "watch_events_spawn"),
        ("deploy", "watch_events_deploy"),
    ] {
        let m = &r[key];
        if m.is_null() {
            continue;
        }
        out.push_str(&format!(
            "watch events per process during the {label}: {:.0} on the {} full views (GCS members), \
             mean {:.0} and max {} on the {} others (mean {:.1} watches each)\n",
            f(&m["full_mean_events"]),
            m["full_views"],
            f(&m["narrow_mean_events"]),
            m["narrow_max_events"],
            m["narrow_views"],
            f(&m["narrow_mean_watches"])
        ));
    }
    out.push_str(&format!(
        "GCS member data dir: {:.1} MiB, {} keys under /troupe/\n",
        f(&r["gcs_member_dir_bytes"]) / (1 << 20) as f64,
        r["gcs_keys"]
    ));
    out
}
