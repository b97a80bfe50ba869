//! The report's charts, as SVG strings: successes and failures, latency,
//! replicas and the GCS's term and leader per second. Every chart has the
//! same x axis (seconds since the run's origin) and every executed fault's
//! window shaded and labelled by its class (see `chart_kit.rs`).

use std::collections::BTreeSet;

use plotters::prelude::*;

use super::chart_kit::{
    builder, dashed, empty, fmt_int, fmt_log, fmt_x, legend, line, render, shade, steps, Area,
    Frame, Res, FAILURE_RED, LINE_COLORS, RIGHT_AXIS,
};
use super::Report;

/// The four charts in page order: (title, SVG or why it failed).
pub(super) fn all(report: &Report) -> Vec<(&'static str, Result<String, String>)> {
    let f = Frame::new(report);
    vec![
        (
            "Successes and failures per second",
            render(|a| throughput(a, &f, report)),
        ),
        (
            "Latency per second (p50, p99, max)",
            render(|a| latency(a, &f, report)),
        ),
        (
            "Running replicas per deployment",
            render(|a| replicas(a, &f, report)),
        ),
        ("GCS term and leader", render(|a| gcs(a, &f, report))),
    ]
}

/// (a) Successes and failures per second.
fn throughput(root: &Area<'_>, f: &Frame, r: &Report) -> Res<()> {
    let caption = "Successes and failures per second";
    let buckets = &r.series.per_second;
    if buckets.is_empty() {
        return empty(root, caption, f, "requests / s");
    }
    let top = buckets
        .iter()
        .map(|b| b.ok.max(b.failed))
        .max()
        .unwrap_or(0);
    let y_max = (top.max(1) as f64) * 1.25;
    let mut chart = builder(root, caption).build_cartesian_2d(0.0..f.x_end, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("requests / s")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_int)
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(2)
        .draw()?;
    shade(&chart, f, false)?;
    let series = |get: fn(&super::SecondBucket) -> u64| -> Vec<(f64, Option<f64>)> {
        buckets
            .iter()
            .map(|b| (b.t_s as f64, Some(get(b) as f64)))
            .collect()
    };
    let ok = steps(&series(|b| b.ok), 1.0, 1.0);
    let failed = steps(&series(|b| b.failed), 1.0, 1.0);
    line(&mut chart, ok, LINE_COLORS[0].stroke_width(2), "successes")?;
    line(&mut chart, failed, FAILURE_RED.stroke_width(2), "failures")?;
    shade(&chart, f, true)?;
    legend(&mut chart)
}

/// (b) Latency p50 / p99 / max per second, ms, log scale.
fn latency(root: &Area<'_>, f: &Frame, r: &Report) -> Res<()> {
    let caption = "Latency per second (ms, log scale)";
    let buckets = &r.series.per_second;
    let pick = |get: fn(&super::SecondBucket) -> f64| -> Vec<(f64, Option<f64>)> {
        buckets
            .iter()
            .map(|b| {
                let v = get(b);
                let has = b.ok + b.failed > 0 && v.is_finite() && v > 0.0;
                (b.t_s as f64, has.then_some(v))
            })
            .collect()
    };
    let all = [pick(|b| b.p50_ms), pick(|b| b.p99_ms), pick(|b| b.max_ms)];
    let values = all.iter().flatten().filter_map(|(_, v)| *v);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return empty(root, caption, f, "ms");
    }
    let (lo, hi) = ((lo / 1.5).max(1e-3), (hi * 1.5).max(lo * 2.0));
    let mut chart =
        builder(root, caption).build_cartesian_2d(0.0..f.x_end, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ms")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_log)
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(2)
        .draw()?;
    shade(&chart, f, false)?;
    let [p50, p99, max] = all;
    line(
        &mut chart,
        steps(&p50, 1.0, 1.0),
        LINE_COLORS[1].stroke_width(2),
        "p50",
    )?;
    line(
        &mut chart,
        steps(&p99, 1.0, 1.0),
        LINE_COLORS[2].stroke_width(2),
        "p99",
    )?;
    line(
        &mut chart,
        steps(&max, 1.0, 1.0),
        LINE_COLORS[3].stroke_width(1),
        "max",
    )?;
    shade(&chart, f, true)?;
    legend(&mut chart)
}

/// (c) Running replicas per deployment (solid) and targets (dashed).
fn replicas(root: &Area<'_>, f: &Frame, r: &Report) -> Res<()> {
    let caption = "Running replicas per deployment (dashed: target)";
    let probes = &r.series.probes;
    let keys: BTreeSet<&String> = probes
        .iter()
        .flat_map(|p| p.replicas.keys().chain(p.targets.keys()))
        .collect();
    if keys.is_empty() {
        return empty(root, caption, f, "replicas");
    }
    let top = probes
        .iter()
        .flat_map(|p| p.replicas.values().chain(p.targets.values()))
        .max()
        .copied()
        .unwrap_or(0);
    let y_max = top as f64 * 1.25 + 1.0;
    let mut chart = builder(root, caption).build_cartesian_2d(0.0..f.x_end, -0.2..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("replicas")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_int)
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(2)
        .draw()?;
    shade(&chart, f, false)?;
    for (i, key) in keys.into_iter().enumerate() {
        let color = LINE_COLORS[i % LINE_COLORS.len()];
        let at = |p: &crate::record::ProbeSample| p.at_ms as f64 / 1000.0;
        let running: Vec<_> = probes
            .iter()
            .map(|p| (at(p), p.replicas.get(key).map(|n| *n as f64)))
            .collect();
        let target: Vec<_> = probes
            .iter()
            .map(|p| (at(p), p.targets.get(key).map(|n| *n as f64)))
            .collect();
        line(
            &mut chart,
            steps(&running, 1.0, 5.0),
            color.stroke_width(2),
            key,
        )?;
        let label = format!("{key} target");
        dashed(
            &mut chart,
            steps(&target, 1.0, 5.0),
            color.mix(0.8).stroke_width(1),
            &label,
        )?;
    }
    shade(&chart, f, true)?;
    legend(&mut chart)
}

/// (d) The GCS's Raft term (left axis) and leader node (right axis).
fn gcs(root: &Area<'_>, f: &Frame, r: &Report) -> Res<()> {
    let caption = "GCS term (left) and leader node (right)";
    let probes = &r.series.probes;
    let at = |p: &crate::record::ProbeSample| p.at_ms as f64 / 1000.0;
    let terms: Vec<_> = probes
        .iter()
        .map(|p| (at(p), p.term.map(|t| t as f64)))
        .collect();
    let leaders: Vec<_> = probes
        .iter()
        .map(|p| (at(p), p.leader.map(|l| l as f64)))
        .collect();
    if terms.iter().chain(&leaders).all(|(_, v)| v.is_none()) {
        return empty(root, caption, f, "term");
    }
    let max_term = probes.iter().filter_map(|p| p.term).max().unwrap_or(0);
    let max_node = probes
        .iter()
        .flat_map(|p| p.leader.iter().chain(&p.up))
        .max()
        .copied()
        .unwrap_or(0);
    let mut chart = builder(root, caption)
        .margin_right(10)
        .right_y_label_area_size(RIGHT_AXIS)
        .build_cartesian_2d(0.0..f.x_end, 0.0..(max_term as f64 * 1.2 + 1.0))?
        .set_secondary_coord(0.0..f.x_end, -0.5..(max_node as f64 + 1.2));
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("Raft term")
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_int)
        .light_line_style(RGBColor(244, 244, 244))
        .max_light_lines(2)
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("leader (node index)")
        .y_label_formatter(&fmt_int)
        .draw()?;
    shade(&chart, f, false)?;
    line(
        &mut chart,
        steps(&terms, 1.0, 5.0),
        LINE_COLORS[0].stroke_width(2),
        "term",
    )?;
    let style = LINE_COLORS[2].stroke_width(2);
    chart
        .draw_secondary_series(
            steps(&leaders, 1.0, 5.0)
                .into_iter()
                .map(move |s| PathElement::new(s, style)),
        )?
        .label("leader")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    shade(&chart, f, true)?;
    legend(&mut chart)
}
