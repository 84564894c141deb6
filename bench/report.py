"""docs/benchmarks.md, docs/benchmarks.json and docs/latency_cdf.png from a run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.results import Contender, Run, to_json
from bench.stats import MIN_FOR_P999

MAX_P50_RATIO = 1.25
MAX_P99_RATIO = 1.5
MIN_THROUGHPUT_RATIO = 0.8
MAX_RSS_MB = 100.0
MAX_RSS_GROWTH = 0.10  # "flat": at most 10 % more from the first mark to the last
MIN_BUDGET_USED = 0.9
PLOT = "latency_cdf.png"
OVERLOAD = 0.9  # arrivals below this share of the send rate: the contender fell behind
BUSY_MACHINE_CORES = 0.1  # other processes' average use above which the report warns


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    ok: bool


def write(run: Run, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    verdicts = targets(run)
    data = to_json(run)
    data["targets"] = [to_json(v) for v in verdicts]
    paths = [out / "benchmarks.md", out / "benchmarks.json"]
    paths[1].write_text(json.dumps(data, indent=1) + "\n")
    plotted = plot(run, out / PLOT)
    if plotted:
        paths.append(out / PLOT)
    paths[0].write_text(markdown(run, verdicts, plotted))
    return paths


# ---- targets -----------------------------------------------------------------------


def targets(run: Run) -> list[Verdict]:
    verdicts: list[Verdict] = []
    daemon, floor = run.contender("daemon"), run.contender("floor")
    if daemon is not None and floor is not None:
        for phase in daemon.phases:
            other = floor.phase(phase.name)
            if phase.target_rate is None or other is None:
                continue
            if phase.latency is None or other.latency is None:
                continue
            for label, ours, theirs, limit in (
                ("p50", phase.latency.p50, other.latency.p50, MAX_P50_RATIO),
                ("p99", phase.latency.p99, other.latency.p99, MAX_P99_RATIO),
            ):
                ratio = ours / theirs
                verdicts.append(
                    Verdict(
                        f"XADD→wire {label} at {phase.name} ≤ {limit:g}× the floor's",
                        f"{ours:.3f} ms vs {theirs:.3f} ms = {ratio:.2f}×",
                        ratio <= limit,
                    )
                )
        if daemon.throughput is not None and floor.throughput is not None:
            ratio = daemon.throughput.per_s / floor.throughput.per_s
            verdicts.append(
                Verdict(
                    f"sustained throughput ≥ {MIN_THROUGHPUT_RATIO:g}× the floor's",
                    f"{daemon.throughput.per_s:.0f}/s vs {floor.throughput.per_s:.0f}/s "
                    f"= {ratio:.2f}×",
                    ratio >= MIN_THROUGHPUT_RATIO,
                )
            )
    if run.backlog is not None and run.backlog.points:
        points = run.backlog.points
        last = points[-1]
        verdicts.append(
            Verdict(
                f"RSS ≤ {MAX_RSS_MB:g} MB with {last.appended:,} signals appended",
                f"{last.rss_mb:.1f} MB (peak {run.backlog.peak_rss_mb:.1f} MB)",
                max(last.rss_mb, run.backlog.peak_rss_mb) <= MAX_RSS_MB,
            )
        )
        marks = [p for p in points if p.appended > 0]
        if len(marks) >= 2:
            growth = (marks[-1].rss_mb - marks[0].rss_mb) / marks[0].rss_mb
            verdicts.append(
                Verdict(
                    f"RSS flat as the backlog grows ({marks[0].appended:,} → "
                    f"{marks[-1].appended:,}: ≤ {MAX_RSS_GROWTH:.0%} more)",
                    f"{marks[0].rss_mb:.1f} → {marks[-1].rss_mb:.1f} MB ({growth:+.1%})",
                    growth <= MAX_RSS_GROWTH,
                )
            )
    budget = next((b for b in run.budget if b.name == "daemon"), None)
    if budget is not None:
        used = budget.budget_used
        verdicts.append(
            Verdict(
                f"{budget.signals} signals at {run.limit_per_s} orders/s: all placed, "
                f"no 10006, ≥ {MIN_BUDGET_USED:.0%} of the single-order budget used "
                "(batches add their own)",
                f"{budget.placed} placed, {budget.rate_limited}×10006, {used:.0%} used",
                budget.finished and budget.rate_limited == 0 and used >= MIN_BUDGET_USED,
            )
        )
    return verdicts


# ---- markdown ----------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _machine(run: Run) -> list[str]:
    m = run.machine
    libraries = ", ".join(f"{k} {v}" for k, v in m.get("libraries", {}).items())
    rows = [
        ("date", m["date"]),
        ("CPU", f"{m['cpu']}, {m['cores']} cores"),
        ("memory", f"{m['memory_gb']} GB"),
        ("OS, kernel", f"{m['os']}, Linux {m['kernel']}"),
        ("Python", m["python"]),
        ("Redis", f"{m['redis']} (private redis-server, no persistence)"),
        ("libraries", libraries),
        ("commit", m["commit"]),
        (
            "other load",
            f"{m.get('other_load_cores', 0):.2f} cores on average: CPU time of "
            "processes other than the benchmark's during the run",
        ),
    ]
    return _table(("", ""), rows)


def _latency_rows(run: Run) -> list[list[object]]:
    rows: list[list[object]] = []
    names = sorted({p.name for c in run.contenders for p in c.phases if p.target_rate},
                   key=lambda n: float(n.split("/")[0]))  # fmt: skip
    for name in names:
        for c in run.contenders:
            phase = c.phase(name)
            if phase is None or phase.latency is None:
                continue
            lat = phase.latency
            kept_up = phase.arrived_rate >= OVERLOAD * phase.sent_rate
            arrived = f"{phase.arrived_rate:.0f}" + ("" if kept_up else " ⚠")
            on_time = phase.sent_rate >= OVERLOAD * (phase.target_rate or 0)
            sent = f"{phase.sent_rate:.0f}" + ("" if on_time else " ⚠")
            rows.append([f"**{c.name}**", c.kind, name, sent, arrived, lat.n,
                         _ms(lat.p50), _ms(lat.p90), _ms(lat.p99), _ms(lat.p999),
                         _ms(lat.max)])  # fmt: skip
    return rows


def _throughput_rows(run: Run) -> list[list[object]]:
    floor = run.contender("floor")
    base = floor.throughput.per_s if floor and floor.throughput else None
    rows: list[list[object]] = []
    for c in run.contenders:
        t = c.throughput
        if t is None:
            continue
        loaded = c.phase("throughput")
        lat = loaded.latency if loaded is not None else None
        cores = " / ".join(f"{name} {v:.2f}" for name, v in t.cores.items())
        rows.append([f"**{c.name}**", c.kind, t.orders, f"{t.per_s:.0f}",
                     f"{t.per_s / base:.2f}×" if base else "–", f"{t.cpu_us:.0f}",
                     cores, _ms(lat.p50) if lat else "–",
                     _ms(lat.p99) if lat else "–"])  # fmt: skip
    return rows


def _cpu_rows(run: Run) -> tuple[list[str], list[list[object]]]:
    names: list[str] = []
    for c in run.contenders:
        for p in c.phases:
            if p.name not in names and p.name != "throughput":
                names.append(p.name)
    rows: list[list[object]] = []
    for c in run.contenders:
        cells: list[object] = [f"**{c.name}**"]
        for name in names:
            phase = c.phase(name)
            cells.append(f"{phase.cpu_us:.0f}" if phase and phase.cpu_us is not None else "–")
        cells.append(f"{c.throughput.cpu_us:.0f}" if c.throughput else "–")
        cells.append(f"{c.peak_rss_mb:.1f}")
        rows.append(cells)
    return ["contender", *names, "throughput", "peak RSS (MB)"], rows


def markdown(run: Run, verdicts: Sequence[Verdict], plotted: bool) -> str:
    lines = [
        "# Benchmarks",
        "",
        "What `executor` adds on top of the unavoidable (one Redis hop and one HTTP",
        "request), measured against a bare loop that does only that, and against the",
        "usual client libraries. Everything runs on one machine: a private `redis-server`,",
        "the built-in Bybit V5 simulator (`executor sim`) and each contender as its own",
        "process, over 127.0.0.1. No request leaves the machine.",
        "",
        "Reproduce it:",
        "",
        "```sh",
        "python3 tasks.py bench            # everything, under 10 minutes on 2 cores",
        "python3 tasks.py bench --quick    # about a minute: fewer samples, for a smoke test",
        "python3 tasks.py bench --only daemon,floor --daemon-env EXECUTOR_WORKERS=32 --out /tmp/b",
        "```",
        "",
        f"This report: `{run.command}`{' (quick: small samples)' if run.quick else ''}, "
        f"{run.wall_s:.0f} s of wall time. Raw numbers: [benchmarks.json](benchmarks.json).",
        "",
        "## Machine",
        "",
        *_machine(run),
    ]
    other = float(run.machine.get("other_load_cores", 0.0))
    if other > BUSY_MACHINE_CORES:
        lines += [
            f"**The machine was not quiet**: other processes used {other:.2f} of its "
            f"{run.machine['cores']} cores on average during this run, which inflates the "
            "tails (p99 and above) of every contender. Run it again on an idle machine.",
            "",
        ]
    if verdicts:
        lines += ["## Targets", "",
                  *_table(("target", "measured", "verdict"),
                          ([v.target, v.measured, "PASS" if v.ok else "**MISS**"]
                           for v in verdicts))]  # fmt: skip
    findings = _findings(run, verdicts)
    if findings:
        lines += ["Where the misses come from, in this run's numbers:", "", *findings, ""]
    lines += _method(run)
    rows = _latency_rows(run)
    if rows:
        lines += [
            "## Latency",
            "",
            "Milliseconds. *pipeline*: from right before the publisher's `XADD` to the",
            "simulator's first look at the order request. *in hand*: from right before the",
            "library's create call to that same moment (no Redis, the order already built).",
            f"p99.9 is shown only from {MIN_FOR_P999} samples or more. *arrived/s*: orders",
            "per second from the first send to the last arrival. ⚠ under *arrived/s*: the",
            "contender could not keep up with the rate, and its latency measures its growing",
            "queue. ⚠ under *sent/s*: an in-hand client whose calls, one after another, took",
            "longer than the interval; its latency is still per call.",
            "",
            *_table(
                (
                    "contender",
                    "kind",
                    "rate",
                    "sent/s",
                    "arrived/s",
                    "samples",
                    "p50",
                    "p90",
                    "p99",
                    "p99.9",
                    "max",
                ),
                rows,
            ),
        ]
    bursts = [(c, c.phase("burst")) for c in run.contenders]
    burst_rows = [
        [f"**{c.name}**", p.sent, _ms(p.latency.p50), _ms(p.latency.p99), _ms(p.latency.max)]
        for c, p in bursts
        if p is not None and p.latency is not None
    ]
    if burst_rows:
        lines += [
            "## Burst",
            "",
            "All signals appended in one pipeline at one instant; latency counts from that",
            "instant, so the maximum is the time to put the whole burst on the wire.",
            "",
            *_table(("contender", "signals", "p50 (ms)", "p99 (ms)", "max (ms)"), burst_rows),
        ]
    rows = _throughput_rows(run)
    if rows:
        lines += [
            "## Throughput",
            "",
            "Against a simulator with no limits. Pipelines: a backlog appended at once and",
            "drained as fast as the contender goes. In-hand clients: 16 concurrent senders",
            "(tasks, or threads for pybit). Orders per second between the 10th and 90th",
            "percentile of arrivals. *cores*: CPU used by each process over the run",
            "(1.00 is one core of the 2); the simulator is a Python process too and can be",
            "the bottleneck. Latency under load is per order, as in the latency table.",
            "",
            *_table(
                (
                    "contender",
                    "kind",
                    "orders",
                    "orders/s",
                    "× floor",
                    "CPU µs/order",
                    "cores",
                    "p50 under load (ms)",
                    "p99 under load (ms)",
                ),
                rows,
            ),
        ]
    if run.contenders:
        header, rows = _cpu_rows(run)
        lines += [
            "## CPU time and memory",
            "",
            "The contender's own CPU time (user + system, from `/proc/<pid>/stat`) per",
            "signal, in microseconds, over each part of the run; at low rates it includes",
            "what the process does while idle (the daemon polls its kill switch twice a",
            "second and refreshes its presence record every second). Peak RSS is `VmHWM`.",
            "",
            *_table(header, rows),
        ]
    lines += _profile(run)
    lines += _backlog(run)
    lines += _budget(run)
    if plotted:
        lines += [
            "## Latency distribution",
            "",
            f"![latency CDF per rate]({PLOT})",
            "",
            "Solid lines: `XADD` to the wire. Dashed: create call to the wire.",
            "",
        ]
    return "\n".join(lines)


def _p50(run: Run, name: str, rate: str) -> float | None:
    contender = run.contender(name)
    phase = contender.phase(rate) if contender else None
    return phase.latency.p50 if phase and phase.latency else None


def _findings(run: Run, verdicts: Sequence[Verdict]) -> list[str]:
    """Evidence for each kind of miss, read from the other contenders of the run."""
    daemon, floor = run.contender("daemon"), run.contender("floor")
    if daemon is None or floor is None or all(v.ok for v in verdicts):
        return []
    out: list[str] = []
    behind = [p for p in daemon.phases if p.target_rate and p.arrived_rate < OVERLOAD * p.sent_rate]
    for phase in behind:
        out.append(
            f"- At {phase.name} the daemon sends {phase.arrived_rate:.0f} orders/s: less than "
            "it receives, so its latency there is the time spent in its growing queue."
        )
    dt, ft = daemon.throughput, floor.throughput
    if dt is not None and ft is not None and dt.per_s < MIN_THROUGHPUT_RATIO * ft.per_s:
        own = dt.cores.get(daemon.name, 0.0)
        sim = dt.cores.get("simulator", 0.0)
        out.append(
            f"- Throughput is bound by the daemon's CPU: it used {own:.2f} cores "
            f"({dt.cpu_us:.0f} µs per order, the floor {ft.cpu_us:.0f} µs) while the "
            f"simulator used {sim:.2f}."
        )
        httpx, fast = run.contender("httpx"), run.contender("httpx-aiohttp")
        if httpx and httpx.throughput and fast and fast.throughput:
            out.append(
                "- For scale, with the order in hand and no Redis at all: httpx on its own "
                f"transport costs {httpx.throughput.cpu_us:.0f} µs per order and tops out "
                f"at {httpx.throughput.per_s:.0f}/s; the same client on aiohttp's "
                f"transport (httpx-aiohttp) {fast.throughput.cpu_us:.0f} µs and "
                f"{fast.throughput.per_s:.0f}/s."
            )
    slow = [
        (rate, d, f)
        for rate in ("10/s", "100/s", "1000/s")
        if (d := _p50(run, "daemon", rate)) and (f := _p50(run, "floor", rate))
        and d > MAX_P50_RATIO * f
    ]  # fmt: skip
    if slow:
        added = ", ".join(f"{d - f:.2f} ms at {rate}" for rate, d, f in slow)
        out.append(
            f"- The daemon adds {added} to the floor's p50. Before its request leaves "
            "it validates the signal and, in one Redis script call the floor does not "
            "make, claims the signal's id and takes its grant from the rate budget "
            "shared through Redis. That round trip stays in front of the send: sent "
            "together, a second publication of an id whose first order the exchange "
            "refused would be placed, since Bybit only turns away an `orderLinkId` it "
            "has an order for. At low rates each signal finds the machine idle and "
            "every step, the script inside Redis included, runs on cold caches; under "
            "load the script's reply also waits its turn on the busy event loop."
        )
    for rate, *_ in slow:
        dp, fp = daemon.phase(rate), floor.phase(rate)
        if not (dp and fp and dp.cpu_us and fp.cpu_us and dp.target_rate):
            continue
        cores = dp.cpu_us * dp.target_rate / 1e6
        if cores > 0.5:
            out.append(
                f"- At {rate} the daemon spends {dp.cpu_us:.0f} µs of CPU per order (the "
                f"floor {fp.cpu_us:.0f} µs): {cores:.2f} of a core, beside the simulator, "
                "Redis and the publisher on the same 2 cores, so its orders also queue for "
                "the CPU. Its per-order work (validation, the dedup record, the result and "
                "its metrics) is what the floor leaves out."
            )
    return out


def run_slices(run: Run) -> int:
    return int(run.machine.get("slices", 1))


def _daemon_env(run: Run) -> list[str]:
    daemon = run.contender("daemon")
    if daemon is None or not daemon.env:
        return []
    given = ", ".join(f"`{k}={v}`" for k, v in daemon.env.items())
    return [f"  Set on the command line for every daemon of the run: {given}."]


def _method(run: Run) -> list[str]:
    parts = ["## How it is measured", ""]
    parts += [
        "- **Clock.** Send times are `time.monotonic_ns()` taken by the sender right",
        "  before its `XADD` or create call; the simulator stamps each request with the",
        "  same clock as the first thing its handler does (`received_ns`). On Linux",
        "  `CLOCK_MONOTONIC` is shared by every process, so the difference needs no",
        "  synchronisation.",
        "- **Rates.** Signals are published open loop: each send is scheduled from a fixed",
        "  start on the monotonic clock, so a late one never delays the next. Each",
        "  contender has its own stream and only one is fed at a time. The daemon and",
        f"  the floor take each rate in {run_slices(run)} alternating turns (daemon, floor,",
        "  floor, daemon, ...), so a slow minute of this shared machine weighs on both",
        "  alike; each turn starts with a lead-in at that rate (1 s; less in quick mode)",
        "  that is sent but not measured. The in-hand clients run one after another.",
        "- **The floor** (`bench/floor.py`) is the least a bridge can do: `XREADGROUP`,",
        "  parse, build and sign the body, `POST` on a keep-alive aiohttp connection,",
        "  `XACK`; 16 requests in flight at most. No validation, dedup, limiter, retry,",
        "  result or metric. It runs on the daemon's event loop (here "
        f"{run.machine.get('floor_loop', 'asyncio')}), so the",
        "  loop's cost is not counted as the daemon's. It talks to Redis through",
        "  redis-py, as a short script would; the daemon reads, claims and acks on its",
        "  own lean RESP connections (`executor/resp.py`), which cost less per round",
        "  trip, and uses redis-py for the rest.",
        "- **The daemon** runs as deployed (`python -m executor run`) with the defaults of",
        "  its commit except: a rate limit no run reaches (`RATE_LIMIT_PER_S` and `_BURST`",
        "  100000, but not in the rate-budget run), batches on (`BATCH_ORDERS=true`),",
        "  warning-level logs and no metrics port.",
        *_daemon_env(run),
        "- **In-hand clients** are each a process (`bench/clients.py`) holding the order:",
        "  httpx signing by hand, on its own transport and on httpx-aiohttp's (aiohttp's",
        "  connection pool under httpx's API); pybit's `HTTP` with its `endpoint` set to the",
        "  simulator (synchronous: calls one after another, or on threads); ccxt's async",
        "  `bybit` with every URL set to the simulator, linear markets only, no currency",
        "  fetch and the account type given, with and without its built-in throttle",
        "  (`enableRateLimit`). At a rate, a client sends one order after another on the",
        "  schedule; when a call takes longer than the interval it falls behind, and",
        "  *sent/s* shows it.",
        "- **Signals** are market orders for 0.001 BTCUSDT (linear); every one becomes",
        "  one order.",
    ]
    if run.quick:
        parts.append("- **Quick mode**: samples are small; the percentiles are indicative only.")
    return [*parts, ""]


def _profile(run: Run) -> list[str]:
    if not run.profile:
        return []
    rows = [[f"`{h.frame}`", f"{h.inclusive:.0%}", f"{h.own:.0%}"] for h in run.profile]
    return [
        "## Where the daemon's time goes",
        "",
        f"py-spy, {run.profile_samples} busy samples while the daemon drained the",
        "throughput backlog (`--profile`; sampling slows the daemon, so that run's",
        "throughput is not comparable). *inclusive*: share of busy samples with the",
        "function anywhere on the stack; *own*: on top of it.",
        "",
        *_table(("function", "inclusive", "own"), rows),
    ]


def _backlog(run: Run) -> list[str]:
    backlog = run.backlog
    if backlog is None:
        return []
    rows = [
        [f"{p.appended:,}", f"{p.lag:,}", f"{p.pending:,}", f"{p.rss_mb:.1f}", f"{p.redis_mb:.1f}"]
        for p in backlog.points
    ]
    return [
        "## Memory with a backlog",
        "",
        "The daemon (queue size",
        f"{backlog.queue_size}, {backlog.workers} workers) against a simulator that holds",
        "every answer back: each worker waits on one order, the bounded queue fills and",
        "intake stops reading, so later signals wait in Redis. *lag*: entries the group",
        "has not read; *pending*: read by the daemon and not yet acknowledged.",
        f"Peak RSS over the whole test: {backlog.peak_rss_mb:.1f} MB.",
        "",
        *_table(
            (
                "signals appended",
                "lag (in Redis)",
                "pending (in the daemon)",
                "daemon RSS (MB)",
                "Redis used (MB)",
            ),
            rows,
        ),
    ]


def _budget(run: Run) -> list[str]:
    if not run.budget:
        return []
    rows = []
    for b in run.budget:
        failures = ", ".join(f"{k} {v}" for k, v in b.other_errors.items()) or "none"
        used = b.budget_used
        rows.append([f"**{b.name}**", b.how, b.signals, b.placed, b.rate_limited, failures,
                     f"{b.seconds:.1f}", f"{used:.0%}"])  # fmt: skip
    return [
        "## Rate budget",
        "",
        f"A burst of signals against a simulator that allows {run.limit_per_s} order",
        "creations per second per account, over a rolling second, as Bybit does for",
        "linear (`retCode 10006` beyond it). Each contender has its own simulator; they run",
        "side by side. *failures*: signals that did not end as an order (the daemon's",
        "results other than `accepted`; the exceptions the libraries raised). *seconds*:",
        "from the first send to the last accepted order. *budget used*: orders placed",
        "against the most a rolling one-second window lets through over that time,",
        f"{run.limit_per_s} × (seconds + 1).",
        "",
        *_table(
            (
                "contender",
                "how the burst was sent",
                "signals",
                "placed",
                "10006 answers",
                "failures",
                "seconds",
                "budget used",
            ),
            rows,
        ),
        *_examples(run),
    ]


def _examples(run: Run) -> list[str]:
    lines = [
        f"- {b.name}, {kind}: `{message}`"
        for b in run.budget
        for kind, message in b.examples.items()
    ]
    return ["What the libraries raised:", "", *lines, ""] if lines else []


# ---- the plot ----------------------------------------------------------------------


def plot(run: Run, path: Path) -> bool:
    """One panel per rate: the share of signals within each latency (log scale)."""
    rates = sorted({p.name for c in run.contenders for p in c.phases if p.target_rate},
                   key=lambda n: float(n.split("/")[0]))  # fmt: skip
    if not rates:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rates), figsize=(5.2 * len(rates), 4.4), sharey=True)
    axes = axes if len(rates) > 1 else [axes]
    colors = plt.get_cmap("tab10")
    for ax, rate in zip(axes, rates, strict=True):
        for index, contender in enumerate(run.contenders):
            phase = contender.phase(rate)
            if phase is None or not phase.samples_ns:
                continue
            xs = sorted(s / 1e6 for s in phase.samples_ns)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            style = "-" if contender.kind == "pipeline" else "--"
            ax.plot(xs, ys, style, color=colors(index), label=_label(contender), linewidth=1.4)
        ax.set_xscale("log")
        ax.set_title(f"{rate}")
        ax.set_xlabel("latency (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("share of signals at or below")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle("XADD → wire (solid) and create call → wire (dashed), per rate")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _label(contender: Contender) -> str:
    return contender.name if contender.kind == "pipeline" else f"{contender.name} (in hand)"
