"""Command line: parses arguments and hands over to the parts, nothing else."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from executor import __version__
from executor.settings import ConfigError, load_settings


def _run(_args: argparse.Namespace) -> int:
    from executor.app import configure_logging, run_daemon

    settings = load_settings()
    configure_logging(settings)
    if settings.event_loop == "uvloop":
        _use_uvloop()
    return asyncio.run(_serve(lambda stop, reload: run_daemon(settings, stop, reload)))


def _use_uvloop() -> None:
    """uvloop where it is installed (Linux and macOS); the standard loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(main: Any) -> int:
    """Run ``main(stop, reload)``. The first SIGTERM/SIGINT asks it to drain, a
    second forces exit; SIGHUP asks it to reload its key files."""
    stop = asyncio.Event()
    reload = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload.set)

    def on_signal(signum: int) -> None:
        if stop.is_set():
            print(f"executor: second {signal.Signals(signum).name}, exiting now", file=sys.stderr)
            os._exit(130)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await main(stop, reload)
    return 0


def _keys(_args: argparse.Namespace) -> int:
    from executor.app import api_keys
    from executor.keycheck import run_keys_command

    settings = load_settings()
    return asyncio.run(
        run_keys_command(
            settings.base_url,
            api_keys(settings),
            recv_window_ms=settings.recv_window_ms,
            timeout_s=settings.request_timeout_s,
        )
    )


def _halt(args: argparse.Namespace) -> int:
    from executor.app import set_halt

    settings = load_settings()
    reason = " ".join(args.reason) or "halted by operator"
    asyncio.run(set_halt(settings, reason))
    print(f"halted: every replica stops submitting within a second ({settings.halt_key})")
    return 0


def _resume(_args: argparse.Namespace) -> int:
    from executor.app import set_halt

    settings = load_settings()
    asyncio.run(set_halt(settings, None))
    print(f"resumed ({settings.halt_key} cleared)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from executor.status import Names, collect, render

    settings = load_settings()
    names = Names(
        settings.stream,
        settings.group,
        settings.results_stream,
        settings.dead_letter_stream,
        settings.halt_key,
    )

    async def go() -> dict[str, Any]:
        redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_connect_timeout=5)
        try:
            return await collect(redis, names, last=args.last)
        finally:
            await redis.aclose()

    try:
        report = asyncio.run(go())
    except (RedisError, OSError) as exc:
        print(f"executor status: Redis unreachable: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


def _check(args: argparse.Namespace) -> int:
    """Container health probe: this host's daemon answers /healthz (or /readyz)."""
    import urllib.error
    import urllib.request

    settings = load_settings()
    if not settings.metrics_port:
        print("executor check: EXECUTOR_METRICS_PORT is 0: no health endpoint", file=sys.stderr)
        return 1
    path = "/readyz" if args.ready else "/healthz"
    url = f"http://127.0.0.1:{settings.metrics_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            body = response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        print(f"executor check: {path} {exc.code}: {exc.read().decode(errors='replace')}")
        return 1
    except (OSError, TimeoutError) as exc:
        print(f"executor check: {path} did not answer: {exc}", file=sys.stderr)
        return 1
    print(f"executor check: {path} {body}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from executor.demo import run_demo

    return asyncio.run(run_demo(verbose=args.verbose))


def _sim(args: argparse.Namespace) -> int:
    from executor.bybit import sim_cli

    return int(sim_cli.run(args))


def _publish(args: argparse.Namespace) -> int:
    from redis.asyncio import Redis

    from executor.publish import publish

    settings = load_settings()
    if args.symbol:
        signal_obj: dict[str, Any] = {
            "symbol": args.symbol,
            "side": args.side,
            "order_type": args.order_type,
            "qty": args.qty,
            "category": args.category,
        }
        for name in ("id", "price", "ttl_ms", "strategy", "time_in_force"):
            value = getattr(args, name)
            if value is not None:
                signal_obj[name] = value
        signals: list[dict[str, Any] | bytes] = [signal_obj]
    else:
        signals = []
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                signals.append(json.loads(line))
            except ValueError as exc:
                print(f"executor publish: line {number}: not JSON: {exc}", file=sys.stderr)
                return 2
    try:
        kid, secret = _signing_key(settings.publisher_secrets(), settings.signal_kid)
    except KeyError:
        print(f"executor publish: EXECUTOR_SIGNAL_KID {settings.signal_kid!r} is not "
              "in EXECUTOR_SIGNAL_SECRETS", file=sys.stderr)  # fmt: skip
        return 2

    async def go() -> list[str]:
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        try:
            return await publish(redis, settings.stream, signals, secret=secret, kid=kid)
        finally:
            await redis.aclose()

    for entry_id in asyncio.run(go()):
        print(entry_id)
    return 0


def _signing_key(secrets: dict[str, str], kid: str | None) -> tuple[str | None, str | None]:
    """(key id, secret) a publisher signs with: the chosen id, else SIGNAL_SECRET
    (no id), else the first listed id; (None, None) when signing is off."""
    if kid is not None:
        return kid, secrets[kid]
    if "" in secrets:
        return None, secrets[""]
    return next(iter(secrets.items()), (None, None))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="executor", description="Bybit V5 signal-to-order execution daemon."
    )
    root.add_argument("--version", action="version", version=f"executor {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the daemon (configured by EXECUTOR_* variables)").set_defaults(
        func=_run
    )

    sub.add_parser(
        "keys", help="check the configured API keys: permissions, IPs, expiry, one account"
    ).set_defaults(func=_keys)
    halt = sub.add_parser("halt", help="kill switch: stop all submission on every replica")
    halt.add_argument("reason", nargs="*", help="why (shown in logs and results)")
    halt.set_defaults(func=_halt)
    sub.add_parser("resume", help="clear the kill switch").set_defaults(func=_resume)

    status = sub.add_parser(
        "status", help="stream length, group lag, pending, dead letters, replicas, last outcomes"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--last", type=int, default=10, help="how many recent outcomes to list")
    status.set_defaults(func=_status)

    check = sub.add_parser(
        "check", help="health probe for containers: exit 0 when the daemon here answers"
    )
    check.add_argument("--ready", action="store_true", help="ask /readyz instead of /healthz")
    check.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    check.set_defaults(func=_check)

    demo = sub.add_parser("demo", help="the whole flow on embedded Redis and the simulator")
    demo.add_argument("--verbose", action="store_true", help="show the daemon's log lines")
    demo.set_defaults(func=_demo)

    from executor.bybit import sim_cli

    sim = sub.add_parser("sim", help="run the Bybit V5 simulator")
    sim_cli.add_arguments(sim)
    sim.set_defaults(func=_sim)

    pub = sub.add_parser(
        "publish", help="append a signal (from flags, or JSON lines on stdin) to the stream"
    )
    pub.add_argument("--id")
    pub.add_argument("--symbol")
    pub.add_argument("--side", default="Buy")
    pub.add_argument("--type", dest="order_type", default="Market")
    pub.add_argument("--qty", default="0.001")
    pub.add_argument("--price")
    pub.add_argument("--category", default="linear")
    pub.add_argument("--time-in-force", dest="time_in_force")
    pub.add_argument("--ttl-ms", dest="ttl_ms", type=int)
    pub.add_argument("--strategy")
    pub.set_defaults(func=_publish)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"executor: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
