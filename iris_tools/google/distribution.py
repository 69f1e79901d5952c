"""Cloud Monitoring's Distribution values (googleapis `distribution.proto`): bucket bounds, counts, quantiles."""

from __future__ import annotations

from typing import Any


def upper_bounds(options: dict[str, Any], buckets: int) -> list[float]:
    """Each bucket's upper bound, for Cloud Monitoring's explicit, exponential or linear bucket options."""
    if "exponentialBuckets" in options:
        exponential = options["exponentialBuckets"]
        scale, growth = float(exponential["scale"]), float(exponential["growthFactor"])
        finite = int(exponential["numFiniteBuckets"])
        bounds = [scale * growth**i for i in range(finite + 1)]  # underflow, then each finite bucket
    elif "linearBuckets" in options:
        linear = options["linearBuckets"]
        bounds = [float(linear["offset"]) + float(linear["width"]) * i for i in range(int(linear["numFiniteBuckets"]) + 1)]
    else:
        bounds = [float(b) for b in options.get("explicitBuckets", {}).get("bounds", [])]
    return (bounds + [float("inf")] * buckets)[:buckets]


def buckets(distribution: dict[str, Any]) -> list[tuple[float, int]]:
    """(lower bound ms, count) for each bucket of a distribution that holds any request."""
    counts = [int(c) for c in distribution.get("bucketCounts", [])]
    bounds = upper_bounds(distribution.get("bucketOptions", {}), len(counts))
    return [(bounds[index - 1] if index else 0.0, count) for index, count in enumerate(counts) if count]


def percentile(distribution: dict[str, Any], fraction: float) -> float | None:
    """The upper bound of the bucket holding the `fraction` quantile (ms); None when empty."""
    counts = [int(c) for c in distribution.get("bucketCounts", [])]
    bounds = upper_bounds(distribution.get("bucketOptions", {}), len(counts))
    total = sum(counts)
    if total == 0:
        return None
    rank, seen = fraction * total, 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            return float(bounds[index]) if index < len(bounds) else float("inf")
    return float("inf")
