"""Benchmark every serving target side by side, on loopback, in one run.

    python -m iris_tools.bench [--quick] [--only NAME ...] [--json PATH] [--docs PATH]

A target is something that answers one prediction over HTTP: our functions
(as processes and, with docker, as containers) and the baselines registered in
`iris_tools/bench/serving_targets.py`. Each target is started, measured and stopped in turn;
load comes from wrk. The figures go to stdout as a table, to JSON (--json), and
with --docs to the markdown page that keeps the latest table.

Measured per target, where it applies:
  cold start   spawn to first 200 on the single-prediction request (median of runs)
  (load figures: medians over rounds in which the targets take turns, all servers up)
  memory       resident set of the serving process(es) after the throughput runs
  throughput   single-prediction requests/s and p50/p99 latency at 1, 8 and 32 connections
  batch        rows/s for 1,000- and 10,000-row POSTs
  image        size of the container image
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from iris_tools.environment import ROOT
from iris_tools.bench.pipeline_targets import pipeline_ratios, pipeline_targets
from iris_tools.bench.serving_targets import Request, Target, all_targets, ratios, wait_ready
from iris_tools.local.servers import Server

CONNECTIONS = (1, 8, 32)
BATCH_SIZES = (1_000, 10_000)


@dataclass
class BenchSettings:
    duration_s: float = 3.0
    cold_start_runs: int = 5
    batch_duration_s: float = 2.0
    rounds: int = 3


QUICK = BenchSettings(duration_s=1.0, cold_start_runs=1, batch_duration_s=1.0, rounds=1)


@dataclass
class Result:
    target: str
    group: str
    protocol: str = "tutorial"
    description: str = ""
    cold_start_s: float | None = None
    rss_mb: float | None = None
    rss_total_mb: float | None = None
    image_mb: float | None = None
    single: dict[str, dict[str, float]] = field(default_factory=dict)  # connections -> rps, p50_ms, p99_ms
    batch_rows_per_s: dict[str, float] = field(default_factory=dict)  # rows -> rows/s
    inprocess_rows_per_s: dict[str, float] = field(default_factory=dict)
    predict_one_ms: dict[str, float] = field(default_factory=dict)  # estimator, handler: one row, in-process
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- measurements


def cold_start(target: Target, runs: int) -> float:
    """Median seconds from spawning the target to its first 200 on the single-prediction request."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        handle = target.start()
        try:
            wait_ready(handle, target.single, timeout=120)
            times.append(time.perf_counter() - started)
        finally:
            handle.stop()
    return statistics.median(times)


_LATENCY = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_script(request: Request, directory: Path) -> Path:
    script = directory / "request.lua"
    body = request.body.decode() if request.body else ""
    script.write_text(
        f"wrk.method = {json.dumps(request.method)}\n"
        f"wrk.body = {json.dumps(body)}\n"
        f"wrk.headers['Content-Type'] = {json.dumps(request.content_type or 'text/plain')}\n"
    )
    return script


def run_wrk(url: str, request: Request, connections: int, duration_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        script = wrk_script(request, Path(directory))
        command = ["wrk", "--latency", "-t", str(min(connections, 2)), "-c", str(connections),
                   "-d", f"{max(1, round(duration_s))}s", "--timeout", "10s", "-s", str(script), url + request.path]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latencies = {f"p{p}_ms": float(v) * _UNITS[u] for p, v, u in _LATENCY.findall(output)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} non-2xx answers under load:\n{output}")
    return {"rps": round(rps, 1), **{k: round(v, 3) for k, v in latencies.items()}}


def rss_mb(pids: list[int]) -> tuple[float, float]:
    """(largest single process, sum over the processes) resident set, in MB."""
    sizes = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if match:
            sizes.append(int(match.group(1)) / 1024)
    return (round(max(sizes), 1), round(sum(sizes), 1)) if sizes else (0.0, 0.0)


def _median_point(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}


def measure_all(targets: list[Target], settings: BenchSettings) -> list[Result]:
    """Every target measured in the same run. Load points alternate between targets, round after
    round, with all servers up (idle but for the one under load), so a noisy spell on this shared
    machine spreads over all targets instead of landing on one; each figure is the median of rounds."""
    results = {t.name: Result(target=t.name, group=t.group, protocol=t.protocol, description=t.description)
               for t in targets}
    for target in targets:
        print(f"cold start of {target.name} ...", file=sys.stderr, flush=True)
        results[target.name].cold_start_s = round(cold_start(target, settings.cold_start_runs), 3)
    handles: dict[str, Server] = {}
    try:
        for target in targets:
            handles[target.name] = target.start()
            wait_ready(handles[target.name], target.single, timeout=120)
        single: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
        batch: dict[tuple[str, int], list[float]] = defaultdict(list)
        for round_number in range(settings.rounds):
            print(f"load, round {round_number + 1} of {settings.rounds} ...", file=sys.stderr, flush=True)
            # Rotate the order each round: no target always goes first, or right after a heavy one.
            order = targets[round_number % len(targets):] + targets[:round_number % len(targets)]
            for connections in CONNECTIONS:
                for target in order:
                    url = handles[target.name].url
                    single[target.name, connections].append(run_wrk(url, target.single, connections, settings.duration_s))
            for rows in BATCH_SIZES:
                for target in order:
                    if target.batch is not None:
                        measured = run_wrk(handles[target.name].url, target.batch(rows), 2, settings.batch_duration_s)
                        batch[target.name, rows].append(measured["rps"] * rows)
        for (name, connections), runs in single.items():
            results[name].single[str(connections)] = _median_point(runs)
        for (name, rows), runs in batch.items():
            results[name].batch_rows_per_s[str(rows)] = round(statistics.median(runs))
        for target in targets:
            result = results[target.name]
            pids = handles[target.name].pids()
            if pids:
                result.rss_mb, result.rss_total_mb = rss_mb(pids)
            if target.predict_one is not None:
                result.predict_one_ms = target.predict_one()
            if target.inprocess is not None:
                for rows in BATCH_SIZES:
                    result.inprocess_rows_per_s[str(rows)] = round(target.inprocess(rows))
            if target.image is not None:
                result.image_mb = round(target.image_size() / 1e6, 1)
    finally:
        for handle in handles.values():
            handle.stop()
    return [results[t.name] for t in targets]


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        cpu = match.group(1) if match else cpu
    memory = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()) if Path("/proc/meminfo").exists() else None
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory_gib": f"{int(memory.group(1)) / 2**20:.0f}" if memory else "?",
            "python": platform.python_version(), "kernel": platform.release()}


def _cell(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def table(results: list[Result]) -> str:
    header = ["target", "cold start s", "RSS MB (max/total)", "image MB",
              *(f"req/s @{c}" for c in CONNECTIONS), *(f"p50/p99 ms @{c}" for c in CONNECTIONS),
              *(f"rows/s {n:,}" for n in BATCH_SIZES), *(f"in-process rows/s {n:,}" for n in BATCH_SIZES)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        cells = [r.target, _cell(r.cold_start_s, "{:.3f}"),
                 "-" if r.rss_mb is None else f"{r.rss_mb:.0f} / {r.rss_total_mb:.0f}", _cell(r.image_mb, "{:.0f}")]
        cells += [_cell(r.single.get(str(c), {}).get("rps")) for c in CONNECTIONS]
        cells += ["-" if str(c) not in r.single else f"{r.single[str(c)].get('p50_ms', 0):.2f} / {r.single[str(c)].get('p99_ms', 0):.2f}"
                  for c in CONNECTIONS]
        cells += [_cell(r.batch_rows_per_s.get(str(n))) for n in BATCH_SIZES]
        cells += [_cell(r.inprocess_rows_per_s.get(str(n))) for n in BATCH_SIZES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_docs(path: Path, results: list[Result], info: dict[str, str], settings: BenchSettings, ratios: str) -> None:
    path.write_text(
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m iris_tools.bench`); every figure of one table comes from one run on one machine,\n"
        "so compare within the table, not across runs. Load: wrk on loopback. The machine is shared and noisy.\n\n"
        f"Run {info['date']} on {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"Python {info['python']}, Linux {info['kernel']}; each load figure the median of {settings.rounds} "
        f"rounds of {settings.duration_s:g} s ({settings.batch_duration_s:g} s for batches), targets alternating; "
        f"cold start the median of {settings.cold_start_runs} runs.\n\n"
        f"{table(results)}\n\n"
        + "".join(f"- `{r.target}`: {r.description}\n" for r in results if r.description)
        + f"\n{ratios}\n"
    )


def ratios_text(results: list[Result]) -> str:
    lines = ratios(results) + pipeline_ratios(results)
    return "\n".join(["## Ratios, from this run", "", *lines]) if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s per load point, one cold start: proves it works")
    parser.add_argument("--only", nargs="*", default=[], help="target names (or groups) to run")
    parser.add_argument("--json", type=Path, default=ROOT / ".bench" / "results.json")
    parser.add_argument("--docs", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--render", type=Path, default=None, help="measure nothing: print (and --docs) a saved JSON")
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        results = [Result(**result) for result in saved["results"]]
        print(table(results) + "\n\n" + ratios_text(results))
        if args.docs:
            write_docs(args.docs, results, saved["machine"], BenchSettings(**saved["settings"]), ratios_text(results))
        return 0
    every = all_targets() + pipeline_targets()
    unknown = sorted(set(args.only) - {t.name for t in every} - {t.group for t in every})
    if unknown:
        print(f"error: no target or group named {', '.join(unknown)}; targets: {', '.join(t.name for t in every)}; "
              f"groups: {', '.join(dict.fromkeys(t.group for t in every))}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 1
    settings = QUICK if args.quick else BenchSettings()
    targets = [t for t in every if not args.only or t.name in args.only or t.group in args.only]
    available = []
    for target in targets:
        skip = target.unavailable()
        if skip:
            print(f"skipping {target.name}: {skip}", file=sys.stderr)
        else:
            available.append(target)
    if not available:
        print("error: every target asked for was skipped (above): nothing to measure", file=sys.stderr)
        return 1
    results = measure_all(available, settings)
    info = {**machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    ratios = ratios_text(results)
    print(table(results))
    if ratios:
        print("\n" + ratios)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "settings": asdict(settings),
                                     "results": [asdict(r) for r in results]}, indent=2) + "\n")
    if args.docs:
        write_docs(args.docs, results, info, settings, ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
