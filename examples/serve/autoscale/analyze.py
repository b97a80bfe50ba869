"""Summarise autoscaling benchmark runs side by side (BENCHMARKS.md
"Autoscaling vs Ray Serve").

Usage: python analyze.py OUT/TAG [OUT/TAG ...] [--trace TRACE]
  (a lone second argument containing ':' is taken as the trace, for run.sh)
Reads TAG.requests.csv (driver.py), TAG.replicas.csv (poll.py) and
TAG.driver (the trace start, `t0 <unix>`); prints a markdown table, one
column per run.

Definitions (service time 50 ms, target_ongoing_requests 2, upscale delay 2 s):
- need(rate) = ceil(rate * 0.05 / 2), at least 1 when rate > 0, at most 8.
- reached: seconds from a phase's start to the first poll with that many
  replicas RUNNING (up-steps), or with at most that many alive (down-steps).
- replica-seconds: replicas alive (starting, running or stopping) integrated
  over the trace; ideal = max(min_replicas, rate * 0.05 / 2) integrated
  (fractional), the whole-replica ideal = max(min_replicas, need(rate))
  integrated, and the delay-bound ideal = the whole-replica one keeping the
  previous count for downscale_delay_s (20 s) after each drop (what an
  autoscaler that obeys the config exactly at best uses). min_replicas is
  read from the tag (`...-min1`).
- changes: changes of the RUNNING count later than 2 * upscale_delay after
  a phase's start; reversals: changes whose direction differs from the
  previous change in that phase.
- from zero: latency of the first request of a phase that starts with no
  replica running, and the worst latency among its first second's requests.
"""
import csv
import math
import sys

DEFAULT_TRACE = "warm:10:30,step:120:60,down:30:40,idle:0:50,burst:60:20"
SERVICE_S, TARGET, UPSCALE_DELAY_S, DOWNSCALE_DELAY_S, MAX_REPLICAS = 0.05, 2.0, 2.0, 20.0, 8


def need(rate):
    return 0 if rate <= 0 else min(MAX_REPLICAS, max(1, math.ceil(rate * SERVICE_S / TARGET - 1e-9)))


def phases_of(trace):
    out, start = [], 0.0
    for part in trace.split(","):
        name, rate, secs = part.split(":")
        out.append((name, float(rate), start, start + float(secs)))
        start += float(secs)
    return out


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


def load(tag):
    t0 = None
    for line in open(tag + ".driver"):
        if line.startswith("t0 "):
            t0 = float(line.split()[1])
    reqs = list(csv.DictReader(open(tag + ".requests.csv")))
    polls = []
    for row in csv.DictReader(open(tag + ".replicas.csv")):
        if row["running"] == "":
            continue
        t = float(row["unix_s"]) - t0
        alive = int(row["running"]) + int(row["starting"]) + int(row["stopping"])
        polls.append((t, int(row["target"]), int(row["running"]), alive))
    try:
        cpu = open(tag + ".replicas.csv.cpu").read().strip()
    except OSError:
        cpu = ""
    return reqs, polls, cpu


def at(polls, t):
    """The last poll at or before t (the first if none)."""
    last = polls[0]
    for p in polls:
        if p[0] > t:
            break
        last = p
    return last


def summarise(tag, trace):
    reqs, polls, cpu = load(tag)
    phases = phases_of(trace)
    end = phases[-1][3]
    r = {}
    lag = max(float(q["send_lag_s"]) for q in reqs)
    r["requests sent"] = f"{len(reqs)}"
    failed = [q for q in reqs if q["status"] != "200"]
    kinds = {}
    for q in failed:
        kinds[q["status"]] = kinds.get(q["status"], 0) + 1
    r["failed requests"] = f"{len(failed)}" + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))})" if kinds else "")
    r["driver's worst send lag"] = f"{lag * 1000:.0f} ms"
    for name, rate, start, stop in phases:
        if rate <= 0:
            continue
        lat = [float(q["latency_s"]) * 1000 for q in reqs if q["phase"] == name and q["status"] == "200"]
        r[f"{name} ({rate:g}/s) p50 / p99 / max ms"] = (
            f"{pct(lat, 50):.0f} / {pct(lat, 99):.0f} / {max(lat) if lat else float('nan'):.0f}"
        )
    # Reaction to each phase.
    prev_need = 0
    for name, rate, start, stop in phases:
        n = need(rate)
        inside = [p for p in polls if start <= p[0] < stop]
        if n > prev_need:
            hit = next((p[0] - start for p in inside if p[2] >= n), None)
            r[f"{name}: {n} running after"] = "not reached" if hit is None else f"{hit:.1f} s"
        elif n < prev_need:
            hit = next((p[0] - start for p in inside if p[3] <= n), None)
            r[f"{name}: down to {n} alive after"] = "not reached" if hit is None else f"{hit:.1f} s"
        prev_need = n
    # Oscillation.
    for name, rate, start, stop in phases:
        if rate <= 0:
            continue
        inside = [p for p in polls if start + 2 * UPSCALE_DELAY_S <= p[0] < stop]
        changes, reversals, seq = 0, 0, []
        last_dir = 0
        for a, b in zip(inside, inside[1:]):
            if b[2] != a[2]:
                changes += 1
                d = 1 if b[2] > a[2] else -1
                if last_dir and d != last_dir:
                    reversals += 1
                last_dir = d
                seq.append(str(b[2]))
        first = str(inside[0][2]) if inside else "?"
        r[f"{name}: changes / reversals after 4 s (running counts)"] = f"{changes} / {reversals} ({'→'.join([first] + seq)})"
    # Replica-seconds over the trace.
    used = running_s = 0.0
    span = [p for p in polls if 0 <= p[0] <= end]
    for a, b in zip(span, span[1:]):
        used += a[3] * (b[0] - a[0])
        running_s += a[2] * (b[0] - a[0])
    import re

    m = re.search(r"min(\d+)", tag.rsplit("/", 1)[-1])
    lo = int(m.group(1)) if m else 0
    ideal = sum(max(lo, rate * SERVICE_S / TARGET) * (stop - start) for _, rate, start, stop in phases)
    whole = sum(max(lo, need(rate)) * (stop - start) for _, rate, start, stop in phases)
    bound, prev = 0.0, None
    for _, rate, start, stop in phases:
        n = max(lo, need(rate))
        held = min(DOWNSCALE_DELAY_S, stop - start) if prev is not None and n < prev else 0.0
        bound += held * prev + (stop - start - held) * n if held else n * (stop - start)
        prev = n
    r["replica-s alive (running)"] = f"{used:.0f} ({running_s:.0f})"
    r["ideal / whole-replica / delay-bound replica-s"] = f"{ideal:.0f} / {whole:.0f} / {bound:.0f}"
    r["used ÷ ideal (÷ delay-bound)"] = f"{used / ideal:.2f}× ({used / bound:.2f}×)"
    r["max replicas alive"] = f"{max(p[3] for p in span)}"
    # From zero.
    for name, rate, start, stop in phases:
        if rate <= 0:
            continue
        if at(polls, start)[2] == 0:
            first = [q for q in reqs if q["phase"] == name]
            if not first:
                continue
            f0 = first[0]
            sec = [float(q["latency_s"]) for q in first if float(q["due_s"]) < start + 1.0]
            r[f"{name}: first request from zero / worst of 1st s"] = (
                f"{float(f0['latency_s']) * 1000:.0f} ms ({f0['status']}) / {max(sec) * 1000:.0f} ms"
            )
        else:
            r[f"{name}: first request from zero / worst of 1st s"] = f"not at zero ({at(polls, start)[2]} running)"
    r["CPU during the run"] = cpu
    return r


def main(argv):
    trace = DEFAULT_TRACE
    tags = []
    i = 0
    while i < len(argv):
        if argv[i] == "--trace":
            trace = argv[i + 1]
            i += 2
            continue
        if ":" in argv[i]:
            trace = argv[i]
        else:
            tags.append(argv[i])
        i += 1
    results = [summarise(t, trace) for t in tags]
    keys = list(results[0].keys())
    for res in results[1:]:
        keys += [k for k in res if k not in keys]
    print("| | " + " | ".join(t.rsplit("/", 1)[-1] for t in tags) + " |")
    print("|---|" + "---|" * len(tags))
    for k in keys:
        print(f"| {k} | " + " | ".join(res.get(k, "") for res in results) + " |")




def timeline(tag):
    """The run's scaling decisions (TAG.decisions: Troupe's `autoscaling
    decision` log lines, Ray's controller `Upscaling`/`Downscaling` lines,
    both in UTC) and its RUNNING-count changes, in seconds from the trace
    start."""
    import datetime
    import re

    reqs, polls, _ = load(tag)
    t0 = None
    for line in open(tag + ".driver"):
        if line.startswith("t0 "):
            t0 = float(line.split()[1])
    events = []
    for line in open(tag + ".decisions"):
        m = re.search(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)[.,](\d+)", line)
        if not m:
            continue
        frac = float("0." + m.group(3))
        stamp = datetime.datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H:%M:%S")
        unix = stamp.replace(tzinfo=datetime.timezone.utc).timestamp() + frac
        text = line.split("autoscaling decision", 1)[-1] if "autoscaling decision" in line else line.split(" -- ", 1)[-1]
        events.append((unix - t0, "decision " + text.strip()))
    for a, b in zip(polls, polls[1:]):
        if b[2] != a[2] or b[3] != a[3]:
            events.append((b[0], f"poll: running {a[2]}→{b[2]}, alive {a[3]}→{b[3]}"))
    for t, e in sorted(events):
        print(f"t={t:7.1f}s {e}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--timeline"]:
        timeline(sys.argv[2])
    else:
        main(sys.argv[1:])
