"""Prints, as JSON, every series Ray Serve's own Grafana dashboards query.

Run with the Python of a venv holding the pinned `ray[serve]` wheel (the
test in examples/tests/actors/grafana.rs does). For each dashboard (Ray's
"Serve" and "Serve Deployment"), each panel target's PromQL expression and
each template variable's `label_values(...)` query, it prints the series
named and the label names the query itself uses (matchers and `by (...)`
clauses; `__name__` regex alternatives expanded), and, apart, the labels of
the dashboard's global filters (template variables whose "All" value
matches a missing label).

Output: {"dashboards": [{"name", "global_filter_labels",
                         "queries": [{"where", "expr", "series": [{"name", "labels"}]}]}]}
"""

import json
import os
import re

import ray.dashboard.modules.metrics.dashboards as dashboards_package
from ray.dashboard.modules.metrics.dashboards import (
    serve_dashboard_panels,
    serve_deployment_dashboard_panels,
)

METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SELECTOR = re.compile(r"(" + METRIC + r")?\s*\{([^{}]*)\}")
MATCHER = re.compile(r"(" + METRIC + r")\s*(=~|!~|!=|=)\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*')")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
FUNCTIONS = {"sum", "rate", "avg", "histogram_quantile", "on", "vector", "by"}


def expand(pattern):
    """`a_(b|c)_d` -> [a_b_d, a_c_d] (the only regex form Ray's panels use)."""
    m = re.search(r"\(([^()]*)\)", pattern)
    if not m:
        return [pattern]
    out = []
    for alt in m.group(1).split("|"):
        out += expand(pattern[: m.start()] + alt + pattern[m.end():])
    return out


def series_of(expr, global_filters):
    """The series `expr` names, each with the labels `expr` itself uses."""
    by_labels = set()
    for group in BY.findall(expr):
        by_labels |= {l.strip() for l in group.split(",") if l.strip()}
    found = []
    for name, body in SELECTOR.findall(expr):
        labels = set()
        names = [name] if name and name not in FUNCTIONS else []
        for label, op, value in MATCHER.findall(body):
            value = value[1:-1]
            if label == "__name__":
                names += expand(value.strip())
            elif label not in global_filters:
                labels.add(label)
        for n in names:
            found.append({"name": n, "labels": sorted(labels | by_labels)})
    return found


def dashboard(config):
    filters = list(config.standard_global_filters)
    filter_labels = sorted({MATCHER.match(f).group(1) for f in filters})
    queries = []
    for panel in config.panels:
        for target in panel.targets:
            expr = target.expr.format(global_filters=",".join(filters))
            queries.append({
                "where": f"panel {panel.id} {panel.title!r}",
                "expr": expr,
                "series": series_of(expr, filter_labels),
            })
    base = os.path.join(os.path.dirname(dashboards_package.__file__), config.base_json_file_name)
    with open(base) as f:
        templating = json.load(f)["templating"]["list"]
    for variable in templating:
        query = variable.get("query")
        if not isinstance(query, dict):
            continue
        text = query["query"].format(global_filters=",".join(filters))
        m = re.match(r"label_values\((.*),\s*(" + METRIC + r")\)\s*$", text)
        if not m:
            continue
        series = series_of(m.group(1), filter_labels)
        for s in series:
            s["labels"] = sorted(set(s["labels"]) | {m.group(2)})
        queries.append({"where": f"variable {variable['name']}", "expr": text, "series": series})
    return {"name": config.name, "global_filter_labels": filter_labels, "queries": queries}


print(json.dumps({"dashboards": [
    dashboard(serve_dashboard_panels.serve_dashboard_config),
    dashboard(serve_deployment_dashboard_panels.serve_deployment_dashboard_config),
]}, indent=1))
