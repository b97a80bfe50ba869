//! The report as one self-contained HTML page: no external CSS, script,
//! font or image; the charts are inline SVG (see `charts.rs`). Every piece
//! of text from the run (scenario, descriptions, check details) is
//! HTML-escaped.

use std::fmt::Write as _;
use std::path::Path;

use super::table::{cells, HEADERS};
use super::{charts, Report, WindowStats};

/// The page's style sheet.
const STYLE: &str = "
body{font-family:sans-serif;margin:1.5em auto;max-width:1000px;color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.meta th{width:11em}code,pre{font-size:.9em}pre{background:#f6f6f6;padding:.8em;overflow:auto}
.verdict{display:inline-block;font-size:1.4em;font-weight:bold;padding:.15em .7em;border-radius:.3em;color:#fff}
.pass{color:#1a7f37}.fail{color:#c62828}.verdict.pass{background:#1a7f37;color:#fff}.verdict.fail{background:#c62828;color:#fff}
ul.checks{list-style:none;padding-left:0}ul.checks li{margin:.2em 0}
.note{color:#777;font-style:italic}figure{margin:1em 0}svg{max-width:100%;height:auto}
";

/// Writes `report` as an HTML page with inline SVG charts to `path`.
///
/// Never panics on an empty report (no requests, probes or faults): its
/// charts are drawn empty with a "no data" note.
pub fn write_html(report: &Report, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render(report))
}

/// The whole page.
fn render(r: &Report) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let title = format!("Chaos report: {}", r.scenario);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    verdict(&mut h, r);
    header(&mut h, r);
    h.push_str("<h2>Requests by fault class</h2>\n");
    let mut overall = r.overall.clone();
    overall.label = "overall".into();
    let rows: Vec<&WindowStats> = r.classes.iter().chain([&overall]).collect();
    stats_table(&mut h, &rows, false);
    h.push_str("<h2>Fault windows</h2>\n");
    if r.windows.is_empty() {
        h.push_str("<p class=\"note\">No fault was executed.</p>\n");
    } else {
        let rows: Vec<&WindowStats> = r.windows.iter().collect();
        stats_table(&mut h, &rows, true);
    }
    faults(&mut h, r);
    checks(&mut h, r);
    h.push_str("<h2>GCS</h2>\n");
    match &r.gcs {
        Some(g) => {
            let _ = writeln!(
                h,
                "<p>{} operations recorded, {} with a known outcome, \
                 {} acknowledged writes.</p>",
                g.operations, g.known, g.acknowledged_writes
            );
        }
        None => h.push_str("<p class=\"note\">No GCS workload in this run.</p>\n"),
    }
    h.push_str(
        "<h2>Charts</h2>\n<p class=\"note\">Shaded: fault windows (injection to heal), \
                labelled by class.</p>\n",
    );
    for (title, svg) in charts::all(r) {
        let _ = writeln!(h, "<figure aria-label=\"{}\">", esc(title));
        match svg {
            Ok(svg) => h.push_str(strip_xml_decl(&svg)),
            Err(e) => {
                let _ = write!(
                    h,
                    "<p class=\"note\">{}: not drawn ({})</p>",
                    esc(title),
                    esc(&e)
                );
            }
        }
        h.push_str("</figure>\n");
    }
    let _ = write!(
        h,
        "<h2>Scenario</h2>\n<details><summary>Scenario file</summary>\
         <pre>{}</pre></details>\n</body>\n</html>\n",
        esc(&r.scenario_text)
    );
    h
}

/// PASS or FAIL, in colour, with the count of failed checks.
fn verdict(h: &mut String, r: &Report) {
    let failed = r.checks.iter().filter(|c| !c.passed).count();
    let (class, word) = if r.passed() {
        ("pass", "PASS")
    } else {
        ("fail", "FAIL")
    };
    let _ = writeln!(
        h,
        "<p><span class=\"verdict {class}\">{word}</span> \
         {failed} of {} checks failed</p>",
        r.checks.len()
    );
}

/// What ran, where and how to run it again.
fn header(h: &mut String, r: &Report) {
    let m = &r.machine;
    let load = |l: Option<f64>| l.map_or_else(|| "?".to_string(), |l| format!("{l:.2}"));
    let machine = format!(
        "{} CPUs, load {} \u{2192} {}, kernel {}",
        m.cpus,
        load(m.load_start),
        load(m.load_end),
        m.kernel.as_deref().unwrap_or("?")
    );
    let unavailable = if r.unavailable.is_empty() {
        "none".to_string()
    } else {
        r.unavailable.join("; ")
    };
    let rows = [
        ("scenario", esc(&r.scenario)),
        ("seed", r.seed.to_string()),
        (
            "git revision",
            esc(r.git_revision.as_deref().unwrap_or("unknown")),
        ),
        ("started at", esc(&r.started_at)),
        (
            "duration",
            format!("{:.1} s", r.duration_ms as f64 / 1000.0),
        ),
        ("reproduce", format!("<code>{}</code>", esc(&r.command))),
        ("machine", esc(&machine)),
        ("network", esc(&r.network)),
        ("unavailable fault kinds", esc(&unavailable)),
    ];
    h.push_str("<table class=\"meta\">\n");
    for (k, v) in rows {
        let _ = writeln!(h, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    h.push_str("</table>\n");
}

/// A table of stats rows (classes or fault windows).
fn stats_table(h: &mut String, rows: &[&WindowStats], with_window: bool) {
    h.push_str("<table>\n<tr>");
    for (i, name) in HEADERS.iter().enumerate() {
        let name = if i == 0 && with_window { "fault" } else { name };
        let _ = write!(h, "<th>{}</th>", esc(name));
        if i == 0 && with_window {
            h.push_str("<th>window s</th>");
        }
    }
    h.push_str("</tr>\n");
    for w in rows {
        h.push_str("<tr>");
        for (i, cell) in cells(w).iter().enumerate() {
            let class = if i == 0 || i == 3 { "" } else { " class=\"n\"" };
            let _ = write!(h, "<td{class}>{}</td>", esc(cell));
            if i == 0 && with_window {
                let _ = write!(
                    h,
                    "<td class=\"n\">{:.1}\u{2013}{:.1}</td>",
                    w.start_ms as f64 / 1000.0,
                    w.end_ms as f64 / 1000.0
                );
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// The executed (and skipped) faults as recorded.
fn faults(h: &mut String, r: &Report) {
    let faults = &r.series.faults;
    if faults.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Faults</h2>\n<table>\n<tr><th>class</th><th>kind</th><th>targets</th>\
         <th>start s</th><th>heal s</th><th>what happened</th></tr>\n",
    );
    for f in faults {
        let targets: Vec<String> = f.targets.iter().map(|t| format!("n{t}")).collect();
        let heal = f
            .heal_ms
            .map_or_else(|| "-".into(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        let what = match &f.skipped {
            Some(why) => format!("<span class=\"fail\">skipped: {}</span>", esc(why)),
            None => esc(&f.description),
        };
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.1}</td>\
             <td class=\"n\">{heal}</td><td>{what}</td></tr>",
            esc(&f.class),
            esc(&f.kind),
            esc(&targets.join(", ")),
            f.start_ms as f64 / 1000.0
        );
    }
    h.push_str("</table>\n");
}

/// The checks, each PASS or FAIL with what was seen.
fn checks(h: &mut String, r: &Report) {
    h.push_str("<h2>Checks</h2>\n");
    if r.checks.is_empty() {
        h.push_str("<p class=\"note\">No checks.</p>\n");
        return;
    }
    h.push_str("<ul class=\"checks\">\n");
    for c in &r.checks {
        let (class, word) = if c.passed {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = writeln!(
            h,
            "<li><b class=\"{class}\">{word}</b> <code>{}</code>: {}</li>",
            esc(&c.name),
            esc(&c.detail)
        );
    }
    h.push_str("</ul>\n");
}

/// An SVG document without a leading `<?xml ...?>` line, if any.
fn strip_xml_decl(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest.find("?>").map_or(svg, |i| rest[i + 2..].trim_start()),
        None => svg,
    }
}

/// Text made safe for HTML content and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
