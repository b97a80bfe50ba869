"""Replica-count poller for the autoscaling benchmark: every 0.25 s for
SECONDS, one line of the deployment's replicas by state, stamped with unix
time; at the end, how the machine's CPU was used over the window (busy,
the processes under test and the driver, everything else = foreign load).

Usage: python poll.py troupe|ray OUT.csv SECONDS
  troupe: GET http://127.0.0.1:8265/api/serve/applications/ (app and
          deployment `sleepy`)
  ray:    serve.status() (app `default`, deployment `Sleepy`), needs Ray's venv
Lines: unix_s,target,running,starting,stopping,other
(target: the autoscaler's target where the system shows it, Troupe's
`target_num_replicas`; Ray's status has none, so running + starting).
"""
import json
import os
import sys
import time
import urllib.request

EVERY_S = 0.25
OURS = ("troupe-chain", "ray", "raylet", "gcs_server", "driver.py", "poll.py", "dashboard")


def cpu_busy():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def cpu_ours():
    d = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            if any(k in cmd for k in OURS):
                st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                d[pid] = int(st[11]) + int(st[12]) + int(st[13]) + int(st[14])
        except OSError:
            pass
    return d


def troupe():
    with urllib.request.urlopen("http://127.0.0.1:8265/api/serve/applications/", timeout=2) as r:
        body = json.load(r)
    app = body.get("applications", {}).get("sleepy")
    if app is None:
        return None
    d = app["deployments"]["sleepy"]
    states = {}
    for rep in d.get("replicas", []):
        states[rep["state"]] = states.get(rep["state"], 0) + 1
    return d.get("target_num_replicas"), states


def ray_status():
    from ray import serve

    d = serve.status().applications["default"].deployments["Sleepy"]
    states = {str(getattr(k, "value", k)): v for k, v in d.replica_states.items()}
    return None, states


def main(system, out, seconds):
    if system == "ray":
        import ray

        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
        get = ray_status
    else:
        get = troupe
    b0, t0, o0 = *cpu_busy(), cpu_ours()
    end = time.time() + seconds
    with open(out, "w") as f:
        f.write("unix_s,target,running,starting,stopping,other\n")
        while time.time() < end:
            now = time.time()
            try:
                got = get()
            except Exception as e:  # the system is busy: note it, keep polling
                f.write(f"{now:.3f},,,,,poll-error:{type(e).__name__}\n")
                got = None
            if got is not None:
                target, st = got
                running = st.get("RUNNING", 0)
                starting = st.get("STARTING", 0) + st.get("PENDING_ALLOCATION", 0) + st.get("PENDING", 0)
                stopping = st.get("STOPPING", 0) + st.get("DRAINING", 0)
                known = {"RUNNING", "STARTING", "PENDING_ALLOCATION", "PENDING", "STOPPING", "DRAINING"}
                other = ";".join(f"{k}={v}" for k, v in sorted(st.items()) if k not in known)
                if target is None:
                    target = running + starting
                f.write(f"{now:.3f},{target},{running},{starting},{stopping},{other}\n")
                f.flush()
            time.sleep(max(0.0, EVERY_S - (time.time() - now)))
    b1, t1, o1 = *cpu_busy(), cpu_ours()
    mine = sum(v - o0.get(p, 0) for p, v in o1.items())
    with open(out + ".cpu", "w") as f:
        f.write(
            f"busy={100 * (b1 - b0) / (t1 - t0):.0f}% ours={100 * mine / (t1 - t0):.0f}% "
            f"foreign={100 * max(0, b1 - b0 - mine) / (t1 - t0):.0f}% (of {os.cpu_count()} cores) "
            f"loadavg={open('/proc/loadavg').read().split()[0]}\n"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
