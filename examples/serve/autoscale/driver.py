"""Open-loop trace driver for the autoscaling benchmark (BENCHMARKS.md,
"Autoscaling vs Ray Serve"). Request k of a phase is sent at
phase_start + k / rate whatever happened to the others; its latency is
counted from that due time (so time the driver itself was late counts
against the system, never hides a queue). Client timeout 30 s, no retries.

Usage: python driver.py URL OUT.csv [TRACE]
  TRACE: comma-separated name:rate:seconds (default: the benchmark's trace)
Writes one line per request: phase,due_s,send_lag_s,latency_s,status
(due and latency relative to the trace start; status is the HTTP code, or
"timeout" / "error:<kind>"). Prints the trace start as unix time on stdout
(`t0 <unix>`) as soon as it is fixed, so pollers can align to it.
Needs aiohttp (in Ray's venv).
"""
import asyncio
import sys
import time

import aiohttp

DEFAULT_TRACE = "warm:10:30,step:120:60,down:30:40,idle:0:50,burst:60:20"
TIMEOUT_S = 30.0


def parse(trace):
    phases = []
    for part in trace.split(","):
        name, rate, secs = part.split(":")
        phases.append((name, float(rate), float(secs)))
    return phases


def schedule(phases):
    """(phase, due offset in s) for every request of the trace, in order."""
    out, start = [], 0.0
    for name, rate, secs in phases:
        if rate > 0:
            n = int(round(rate * secs))
            out.extend((name, start + k / rate) for k in range(n))
        start += secs
    return out, start


async def one(session, url, phase, due, t0, rows):
    sent = time.monotonic()
    try:
        async with session.get(url) as r:
            await r.read()
            status = str(r.status)
    except asyncio.TimeoutError:
        status = "timeout"
    except Exception as e:  # connection refused, reset, ...
        status = f"error:{type(e).__name__}"
    done = time.monotonic()
    rows.append((phase, due, sent - (t0 + due), done - (t0 + due), status))


async def main(url, out, trace):
    phases = parse(trace)
    plan, total = schedule(phases)
    rows, tasks = [], []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        t0 = time.monotonic() + 1.0
        t0_unix = time.time() + (t0 - time.monotonic())
        print(f"t0 {t0_unix:.6f}", flush=True)
        for phase, due in plan:
            delay = t0 + due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, url, phase, due, t0, rows)))
        rest = t0 + total - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        await asyncio.gather(*tasks)
    rows.sort(key=lambda r: r[1])
    with open(out, "w") as f:
        f.write("phase,due_s,send_lag_s,latency_s,status\n")
        for phase, due, lag, lat, status in rows:
            f.write(f"{phase},{due:.4f},{lag:.4f},{lat:.4f},{status}\n")
    bad = sum(1 for r in rows if r[4] != "200")
    print(f"sent {len(rows)} requests, {bad} not 200", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else DEFAULT_TRACE))
