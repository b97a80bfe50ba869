"""The autoscaling benchmark's Ray Serve side: the same `Sleepy` as
../shared/peers/ray/apps.py (50 ms asyncio sleep, "ok") with the same
autoscaling_config as sleepy.yaml gives Troupe's `sleepy`, deployed on the
running cluster (`ray start --head`) as app `default` at `/`; returns once
the application is RUNNING (with min_replicas 0 that is with no replica:
no request is sent, so none is started).

Usage: python ray_sleepy.py MIN_REPLICAS
"""
import asyncio
import sys
import time

import ray
from ray import serve
from starlette.requests import Request

AUTOSCALING = {
    "max_replicas": 8,
    "target_ongoing_requests": 2,
    "upscale_delay_s": 2,
    "downscale_delay_s": 20,
    "look_back_period_s": 10,
    # Deprecated in Ray 2.60 but still honoured: routers and replicas push
    # their metrics to the controller at this interval.
    "metrics_interval_s": 1,
}


@serve.deployment(max_ongoing_requests=5, ray_actor_options={"num_cpus": 0.25})
class Sleepy:
    async def __call__(self, request: Request) -> str:
        await asyncio.sleep(0.05)
        return "ok"


def main(min_replicas):
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    try:
        serve.delete("default")
    except Exception:
        pass
    config = dict(AUTOSCALING, min_replicas=min_replicas)
    t0 = time.monotonic()
    serve.run(
        Sleepy.options(autoscaling_config=config).bind(),
        name="default",
        route_prefix="/",
        blocking=False,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        app = serve.status().applications.get("default")
        if app is not None and app.status.value == "RUNNING":
            break
        time.sleep(0.1)
    else:
        sys.exit("application default not RUNNING within 120 s")
    print(f"deployed Sleepy min_replicas={min_replicas}: RUNNING after {time.monotonic() - t0:.2f}s", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
