"""Per-revision figures in Cloud Monitoring's shape, from Envoy's own counters.

Cloud Run reports `run.googleapis.com/request_count` (DELTA, INT64, label `response_code_class`)
and `run.googleapis.com/request_latencies` (DELTA, DISTRIBUTION, milliseconds), each per
`revision_name`. A sampler reads Envoy's per-cluster statistics (one cluster per revision)
every SAMPLE_S seconds and keeps the cumulative readings; `time_series` answers
projects.timeSeries.list from the differences between readings, so a window's figures (and its
p99, from the difference of two cumulative histograms) are what happened inside it.

Envoy's upstream_rq_time runs from the moment the whole request was received to its answer, across
retries: a request held while an instance started (a cold start) counts the wait, as Cloud Run's
request_latencies does. The instances come from the supervisor: `container/instance_count` (GAUGE, by
`state`) at each reading, and `container/startup_latencies` (each new instance's start to ready).
"""

from __future__ import annotations

import bisect
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from iris_tools.cloudrun.envoy import LATENCY_BUCKETS_MS
from iris_tools.environment import Environment
from iris_tools.google.monitoring import INSTANCE_COUNT, REQUEST_COUNT, REQUEST_LATENCIES, STARTUP_LATENCIES
from iris_tools.google.timestamps import rfc3339

SAMPLE_S = 1.0
KEEP_S = 6 * 3600
_LINE = re.compile(r'^(\w+)\{([^}]*)\} ([0-9.eE+-]+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Reading:
    """Cumulative counters of one revision at one time."""

    at: float
    by_class: dict[str, int] = field(default_factory=dict)  # "2xx" -> requests
    buckets: dict[float, int] = field(default_factory=dict)  # upper bound (ms) -> cumulative count (le)
    latency_sum_ms: float = 0.0
    latency_count: int = 0
    instances: dict[str, int] = field(default_factory=dict)  # "active"/"idle" -> instances at this reading


def parse_prometheus(text: str, at: float) -> dict[str, Reading]:
    """Envoy's /stats/prometheus -> revision name -> Reading."""
    readings: dict[str, Reading] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        metric, labels_text, value = match.groups()
        labels = dict(_LABEL.findall(labels_text))
        cluster = labels.get("envoy_cluster_name")
        if cluster is None:
            continue
        reading = readings.setdefault(cluster, Reading(at))
        if metric == "envoy_cluster_upstream_rq_xx":
            code_class = f"{labels.get('envoy_response_code_class')}xx"
            reading.by_class[code_class] = int(float(value))
        elif metric == "envoy_cluster_upstream_rq_time_bucket":
            bound = labels.get("le")
            if bound and bound != "+Inf":
                reading.buckets[float(bound)] = int(float(value))
        elif metric == "envoy_cluster_upstream_rq_time_sum":
            reading.latency_sum_ms = float(value)
        elif metric == "envoy_cluster_upstream_rq_time_count":
            reading.latency_count = int(float(value))
    return readings


def _plus(a: Reading, b: Reading) -> Reading:
    return Reading(b.at, {k: a.by_class.get(k, 0) + b.by_class.get(k, 0) for k in set(a.by_class) | set(b.by_class)},
                   {k: a.buckets.get(k, 0) + b.buckets.get(k, 0) for k in set(a.buckets) | set(b.buckets)},
                   a.latency_sum_ms + b.latency_sum_ms, a.latency_count + b.latency_count)


class Sampler:
    """Reads the counters every SAMPLE_S seconds in a daemon thread; keeps KEEP_S seconds of readings."""

    def __init__(self, read: Callable[[], str], interval: float = SAMPLE_S,
                 instances: Callable[[], dict[str, dict[str, int]]] = dict,
                 startups: Callable[[], list[tuple[float, str, float]]] = list) -> None:
        self.read = read
        self.instances = instances  # revision -> state -> count, now
        self.startups = startups  # (time, revision, seconds) of each instance started
        self.interval = interval
        self.history: deque[tuple[float, dict[str, Reading]]] = deque()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._last_raw: dict[str, Reading] = {}
        self._carried: dict[str, Reading] = {}
        self._counted_at: dict[str, float] = {}  # revision -> when Envoy last had its counters

    def start(self) -> None:
        self.sample()
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except OSError:
                pass  # Envoy restarting: the next reading will do

    def sample(self) -> None:
        at = time.time()
        readings = parse_prometheus(self.read(), at)
        counts = self.instances()
        with self.lock:
            kept = {name: self._continued(name, raw) for name, raw in readings.items()}
            self._counted_at.update((name, at) for name in readings)
            if self.history:  # a revision whose cluster is gone (no traffic) keeps its counts, as Monitoring keeps
                for name, reading in self.history[-1][1].items():  # its points: a window over its last requests
                    if name not in kept and self._counted_at.get(name, -KEEP_S) >= at - KEEP_S:  # still has them
                        kept[name] = replace(reading, at=at, instances={})
            for name, states in counts.items():
                kept[name] = replace(kept.get(name) or Reading(at), instances=dict(states))
            self.history.append((at, kept))
            while self.history and self.history[0][0] < at - KEEP_S:
                self.history.popleft()

    def _continued(self, name: str, raw: Reading) -> Reading:
        """Envoy's counters start again from zero when Envoy restarts or a revision's cluster is removed and made
        again: what was counted before is carried over, so the kept readings only ever grow."""
        last = self._last_raw.get(name)
        if last is not None and (raw.latency_count < last.latency_count
                                 or sum(raw.by_class.values()) < sum(last.by_class.values())):
            self._carried[name] = _plus(self._carried.get(name, Reading(raw.at)), last)
        self._last_raw[name] = raw
        return _plus(self._carried[name], raw) if name in self._carried else raw

    def _at_or_before(self, moment: float) -> dict[str, Reading]:
        index = bisect.bisect_right(self.history, moment, key=lambda entry: entry[0])  # readings are in time order
        return self.history[index - 1][1] if index else {}

    def window(self, start: float, end: float) -> dict[str, tuple[Reading, Reading]]:
        """revision -> (reading at or before start, reading at or before end)."""
        with self.lock:
            before, after = self._at_or_before(start), self._at_or_before(end)
        return {name: (before.get(name, Reading(start)), reading) for name, reading in after.items()}


@dataclass(frozen=True)
class Shape:
    """How timeSeries.list answers. `exact` (the default): one point over exactly the window asked for, Envoy's
    own buckets, every series on one page: figures a test can reason about. `cloudrun`
    (CLOUDRUN_MONITORING=cloudrun): as Cloud Run's metrics come back from Cloud Monitoring, so the rollout's
    reader meets that shape here too: points aligned to ALIGN_S (60) seconds, each visible only DELAY_S (180)
    after it ends, latencies in exponential buckets (scale 1 ms, growth 1.4: our choice; Envoy's counts are
    moved to the exponential bucket holding each Envoy bucket's upper bound), PAGE_SIZE (2) series a page."""

    align_s: float = 0.0
    delay_s: float = 0.0
    page_size: int = 0
    exponential: bool = False

    @classmethod
    def from_environment(cls, env: Environment) -> "Shape":
        if env["CLOUDRUN_MONITORING"] != "cloudrun":
            return cls()
        return cls(align_s=env["CLOUDRUN_MONITORING_ALIGN_S"], delay_s=env["CLOUDRUN_MONITORING_DELAY_S"],
                   page_size=env["CLOUDRUN_MONITORING_PAGE_SIZE"], exponential=True)

    def aligned(self, period_s: float) -> "Shape":
        """This shape with points aligned to `period_s` (a query's aggregation.alignmentPeriod, ALIGN_DELTA)."""
        return Shape(period_s, self.delay_s, self.page_size, self.exponential)

    def intervals(self, start: float, end: float, now: float) -> list[tuple[float, float]]:
        """The points' intervals, newest first: the window itself, or each aligned interval that ends inside
        [start, end] and is already visible."""
        if not self.align_s:
            return [(start, end)]
        found = []
        edge = math.floor(start / self.align_s) * self.align_s + self.align_s
        while edge <= min(end, now - self.delay_s):
            if edge > start:
                found.append((edge - self.align_s, edge))
            edge += self.align_s
        return found[::-1]


EXPONENTIAL = {"exponentialBuckets": {"numFiniteBuckets": 64, "growthFactor": 1.4, "scale": 1.0}}


def _exponential(counts: list[int]) -> list[int]:
    """Envoy's bucket counts (LATENCY_BUCKETS_MS, then overflow) moved into EXPONENTIAL's buckets."""
    options = EXPONENTIAL["exponentialBuckets"]
    moved = [0] * (options["numFiniteBuckets"] + 2)
    for index, count in enumerate(counts):
        upper = LATENCY_BUCKETS_MS[index] if index < len(LATENCY_BUCKETS_MS) else float("inf")
        if upper == float("inf"):
            slot = len(moved) - 1
        elif upper < options["scale"]:
            slot = 0
        else:
            slot = min(len(moved) - 1, 1 + int(math.floor(math.log(upper / options["scale"], options["growthFactor"]))))
        moved[slot] += count
    return moved


def time_series(sampler: Sampler, metric: str, start: float, end: float, service_of: dict[str, str],
                project: str, region: str, shape: Shape = Shape(), now: float | None = None) -> list[dict[str, Any]]:
    """projects.timeSeries.list for one metric over [start, end]: a series per revision (and code class), each
    point one interval's delta."""
    series: dict[tuple[str, str], dict[str, Any]] = {}
    moment = now if now is not None else (time.time() if shape.align_s else end)
    for first, last in shape.intervals(start, end, moment):
        interval = {"startTime": rfc3339(first), "endTime": rfc3339(last)}
        for revision, (before, after) in sorted(sampler.window(first, last).items()):
            if revision not in service_of:
                continue
            resource = _resource(revision, service_of[revision], project, region)
            if metric == INSTANCE_COUNT:
                for state in ("active", "idle"):
                    entry = series.setdefault((revision, state), {
                        "metric": {"type": metric, "labels": {"state": state}}, "resource": resource,
                        "metricKind": "GAUGE", "valueType": "INT64", "points": []})
                    entry["points"].append({"interval": {"startTime": interval["endTime"], "endTime": interval["endTime"]},
                                            "value": {"int64Value": str(after.instances.get(state, 0))}})
            elif metric == REQUEST_COUNT:
                for code_class in sorted(set(after.by_class) | set(before.by_class)):
                    delta = after.by_class.get(code_class, 0) - before.by_class.get(code_class, 0)
                    if delta <= 0:
                        continue
                    entry = series.setdefault((revision, code_class), {
                        "metric": {"type": metric, "labels": {"response_code_class": code_class}},
                        "resource": resource, "metricKind": "DELTA", "valueType": "INT64", "points": []})
                    entry["points"].append({"interval": interval, "value": {"int64Value": str(delta)}})
            elif metric == REQUEST_LATENCIES:
                count = after.latency_count - before.latency_count
                if count <= 0:
                    continue
                cumulative = [after.buckets.get(b, 0) - before.buckets.get(b, 0) for b in LATENCY_BUCKETS_MS]
                counts = [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, len(cumulative))]
                counts.append(count - (cumulative[-1] if cumulative else 0))  # the overflow bucket
                distribution = _distribution([max(0, c) for c in counts], count,
                                             (after.latency_sum_ms - before.latency_sum_ms) / count, shape)
                entry = series.setdefault((revision, ""), {
                    "metric": {"type": metric, "labels": {}}, "resource": resource, "metricKind": "DELTA",
                    "valueType": "DISTRIBUTION", "points": []})
                entry["points"].append({"interval": interval, "value": {"distributionValue": distribution}})
    if metric == STARTUP_LATENCIES:
        series = _startups(sampler, start, end, service_of, project, region, shape, moment)
    return list(series.values())


def _resource(revision: str, service: str, project: str, region: str) -> dict[str, Any]:
    return {"type": "cloud_run_revision", "labels": {"project_id": project, "location": region, "service_name": service,
                                                     "revision_name": revision, "configuration_name": service}}


def _distribution(counts: list[int], count: int, mean: float, shape: Shape) -> dict[str, Any]:
    """A DISTRIBUTION value from counts per LATENCY_BUCKETS_MS bucket (then the overflow), in `shape`'s buckets."""
    options: dict[str, Any] = {"explicitBuckets": {"bounds": LATENCY_BUCKETS_MS}}
    if shape.exponential:
        counts, options = _exponential(counts), EXPONENTIAL
    return {"count": str(count), "mean": mean, "bucketOptions": options,
            "bucketCounts": [str(c) for c in counts]}


def _startups(sampler: Sampler, start: float, end: float, service_of: dict[str, str], project: str, region: str,
              shape: Shape, moment: float) -> dict[tuple[str, str], dict[str, Any]]:
    """container/startup_latencies: per interval, the distribution of the start-up times (ms) of the instances
    that became ready in it."""
    series: dict[tuple[str, str], dict[str, Any]] = {}
    started = sampler.startups()
    for first, last in shape.intervals(start, end, moment):
        by_revision: dict[str, list[float]] = {}
        for at, revision, seconds in started:
            if first < at <= last and revision in service_of:
                by_revision.setdefault(revision, []).append(seconds * 1000)
        for revision, values in sorted(by_revision.items()):
            counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
            for value in values:
                counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
            entry = series.setdefault((revision, ""), {
                "metric": {"type": STARTUP_LATENCIES, "labels": {}},
                "resource": _resource(revision, service_of[revision], project, region), "metricKind": "DELTA",
                "valueType": "DISTRIBUTION", "points": []})
            distribution = _distribution(counts, len(values), sum(values) / len(values), shape)
            entry["points"].append({"interval": {"startTime": rfc3339(first), "endTime": rfc3339(last)},
                                    "value": {"distributionValue": distribution}})
    return series
