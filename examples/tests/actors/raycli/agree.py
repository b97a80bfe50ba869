"""Ray 2.60's verdict and Troupe's on the same config fields.

For each case, Ray's: `ServeDeploySchema` (what Ray's PUT checks), then
what Ray checks when it builds the application (`validate_route_prefix`,
`AutoscalingConfig`). Troupe's: `PUT /api/serve/applications/` of the
case plus a second application naming no builder, so the answer is
always 400 and nothing is deployed; the case is accepted when every
problem is the second application's. Prints {label: [ray, troupe]} for
the cases where they differ.

Usage: python agree.py http://ADMIN  (token in RAY_AUTH_TOKEN)
"""
import json
import os
import sys
import urllib.error
import urllib.request

from ray.serve._private.utils import validate_route_prefix
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

URL = sys.argv[1]


def config(level, fields):
    deployment = {"name": "count"}
    app = {"name": "a", "route_prefix": "/a", "import_path": "m:chain",
           "deployments": [deployment]}
    top = {}
    if level == "deployment":
        deployment.update(fields)
    elif level == "autoscaling":
        deployment["autoscaling_config"] = fields
    elif level == "actor":
        deployment["ray_actor_options"] = fields
    elif level == "app":
        app.update(fields)
    else:
        top.update(fields)
    probe = {"name": "zz-probe", "route_prefix": "/zz-probe", "import_path": "m:no-such-builder"}
    return dict(top, applications=[app, probe])


def ray(cfg):
    try:
        schema = ServeDeploySchema.model_validate(cfg)
        for app in schema.applications:
            validate_route_prefix(app.route_prefix)
            for d in app.deployments:
                if isinstance(d.autoscaling_config, dict):
                    AutoscalingConfig(**d.autoscaling_config)
        return True
    except Exception:
        return False


def troupe(cfg):
    request = urllib.request.Request(
        URL + "/api/serve/applications/", data=json.dumps(cfg).encode(), method="PUT",
        headers={"content-type": "application/json",
                 "authorization": "Bearer " + os.environ["RAY_AUTH_TOKEN"]})
    try:
        urllib.request.urlopen(request, timeout=30)
        raise SystemExit("Troupe deployed a config naming no builder: " + json.dumps(cfg))
    except urllib.error.HTTPError as e:
        body = json.load(e)
    issues = body["error"].get("issues") or []
    assert issues, body
    return all(i["path"].startswith("applications[1]") for i in issues)


CASES = [
    ("deployment", {"num_replicas": 1}), ("deployment", {"num_replicas": "auto"}),
    ("deployment", {"num_replicas": None}), ("deployment", {"num_replicas": 0}),
    ("deployment", {"num_replicas": 2.0}), ("deployment", {"num_replicas": "2"}),
    ("deployment", {"num_replicas": 2, "autoscaling_config": {"max_replicas": 3}}),
    ("deployment", {"max_ongoing_requests": 1}), ("deployment", {"max_ongoing_requests": 0}),
    ("deployment", {"max_ongoing_requests": 2.0}),
    ("deployment", {"max_queued_requests": -1}), ("deployment", {"max_queued_requests": 1}),
    ("deployment", {"max_queued_requests": 0}), ("deployment", {"max_queued_requests": -2}),
    ("deployment", {"max_queued_requests": 2.0}),
    ("deployment", {"user_config": {"a": 1}}), ("deployment", {"user_config": None}),
    ("deployment", {"user_config": [1]}),
    ("deployment", {"graceful_shutdown_timeout_s": 0}), ("deployment", {"graceful_shutdown_timeout_s": -1}),
    ("deployment", {"graceful_shutdown_wait_loop_s": 0}), ("deployment", {"graceful_shutdown_wait_loop_s": -1}),
    ("deployment", {"health_check_period_s": 0.1}), ("deployment", {"health_check_period_s": 0}),
    ("deployment", {"health_check_timeout_s": 0}),
    ("deployment", {"rolling_update_percentage": 1.0}), ("deployment", {"rolling_update_percentage": 0}),
    ("deployment", {"rolling_update_percentage": 0.2}),
    ("deployment", {"max_surge_percent": 100}), ("deployment", {"max_surge_percent": 101}),
    ("deployment", {"max_replicas_per_node": 2}),
    ("deployment", {"backpressure_config": {}}), ("deployment", {"request_router_config": {}}),
    ("deployment", {"placement_group_bundles": None}),
    ("actor", {"num_cpus": 0, "num_gpus": None}), ("actor", {"num_gpus": -1}),
    ("actor", {"memory": 0, "runtime_env": {}, "accelerator_type": None}), ("actor", {"memory": -1}),
    ("actor", {"accelerator_type": "A100"}),
    ("autoscaling", {"upscale_delay_s": 0}), ("autoscaling", {"upscale_delay_s": -0.5}),
    ("autoscaling", {"downscale_delay_s": 0, "downscale_to_zero_delay_s": 0}),
    ("autoscaling", {"min_replicas": 0, "max_replicas": 1}), ("autoscaling", {"max_replicas": 0}),
    ("autoscaling", {"min_replicas": -1}), ("autoscaling", {"min_replicas": 3, "max_replicas": 2}),
    ("autoscaling", {"max_replicas": 4, "initial_replicas": 5}),
    ("autoscaling", {"initial_replicas": None, "target_ongoing_requests": None, "upscaling_factor": None,
                     "downscaling_factor": None, "downscale_to_zero_delay_s": None}),
    ("autoscaling", {"target_ongoing_requests": 0.001, "look_back_period_s": 0.001, "metrics_interval_s": 0.001}),
    ("autoscaling", {"target_ongoing_requests": 0}), ("autoscaling", {"metrics_interval_s": 0}),
    ("autoscaling", {"smoothing_factor": 0}),
    ("autoscaling", {"aggregation_function": "mean", "policy": {}}), ("autoscaling", {"aggregation_function": "max"}),
    ("app", {"route_prefix": "/"}), ("app", {"route_prefix": "/a/b"}), ("app", {"route_prefix": None}),
    ("app", {"route_prefix": "/a/"}), ("app", {"route_prefix": "/a/{id}"}), ("app", {"route_prefix": "api"}),
    ("app", {"args": {}}), ("app", {"args": [1]}), ("app", {"name": ""}), ("app", {"name": "my app"}),
    ("app", {"runtime_env": {}}), ("app", {"runtime_env": {"env_vars": {"A": "1"}}}),
    ("app", {"external_scaler_enabled": False}), ("app", {"host": "0.0.0.0"}),
    ("app", {"import_path": "pkg.module.chain"}), ("app", {"import_path": "chain"}),
    ("app", {"import_path": "a:b:c"}), ("app", {"import_path": "m:"}),
    ("top", {"proxy_location": "HeadOnly"}), ("top", {"proxy_location": "Nowhere"}),
    ("top", {"target_capacity": None}), ("top", {"target_capacity": 100}), ("top", {"target_capacity": 101}),
    ("top", {"target_capacity": 50}),
    ("top", {"grpc_options": {"port": 9000, "grpc_servicer_functions": [], "enable_reflection": True}}),
    ("top", {"controller_options": None}), ("top", {"tracing_config": {}}),
    ("top", {"tracing_config": {"enabled": False}}),
    ("top", {"http_options": {"request_timeout_s": None, "root_path": "", "ssl_keyfile": None}}),
    ("top", {"http_options": {"host": "0.0.0.0"}}), ("top", {"http_options": {"port": 70000}}),
    ("top", {"logging_config": {"log_level": "WARNING", "additional_log_standard_attrs": []}}),
    ("top", {"logging_config": {"log_level": 10}}), ("top", {"logging_config": {"log_level": 15}}),
    ("top", {"logging_config": {"log_level": "info"}}), ("top", {"logging_config": {"encoding": "text"}}),
]

differ = {}
for level, fields in CASES:
    cfg = config(level, fields)
    verdicts = [ray(cfg), troupe(cfg)]
    if verdicts[0] != verdicts[1]:
        differ[level + " " + json.dumps(fields, sort_keys=True)] = verdicts
print(json.dumps({"cases": len(CASES), "differ": differ}))
