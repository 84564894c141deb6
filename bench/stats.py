"""Latency summaries: pure functions over nanosecond samples."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Below this many samples a 99.9th percentile is one or two observations: not shown.
MIN_FOR_P999 = 1000


@dataclass(frozen=True)
class Latency:
    """Percentiles in milliseconds of ``n`` samples."""

    n: int
    p50: float
    p90: float
    p99: float
    p999: float | None
    max: float
    mean: float


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of sorted values, by the nearest-rank method."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples_ns: Sequence[int]) -> Latency | None:
    if not samples_ns:
        return None
    ms = sorted(s / 1e6 for s in samples_ns)
    return Latency(
        n=len(ms),
        p50=percentile(ms, 50),
        p90=percentile(ms, 90),
        p99=percentile(ms, 99),
        p999=percentile(ms, 99.9) if len(ms) >= MIN_FOR_P999 else None,
        max=ms[-1],
        mean=sum(ms) / len(ms),
    )


def latencies(sent_ns: Mapping[str, int], received_ns: Mapping[str, int]) -> list[int]:
    """Arrival minus send, for every id that arrived."""
    return [received_ns[i] - t for i, t in sent_ns.items() if i in received_ns]


def steady_rate(arrivals_ns: Sequence[int], trim: float = 0.1) -> float:
    """Orders per second between the ``trim`` and ``1 - trim`` quantiles of arrival
    times: the rate once the run has started and before its tail."""
    if len(arrivals_ns) < 10:
        raise ValueError("too few arrivals for a rate")
    ordered = sorted(arrivals_ns)
    lo = int(len(ordered) * trim)
    hi = int(len(ordered) * (1 - trim)) - 1
    span_s = (ordered[hi] - ordered[lo]) / 1e9
    return (hi - lo) / span_s if span_s > 0 else float("inf")
