"""`executor sim`: run the Bybit V5 simulator until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from executor.bybit.sim_faults import parse_ip_limit, parse_order_limit
from executor.bybit.sim_keys import DEMO_KEYS, SimKey, parse_key_spec
from executor.bybit.simulator import SimConfig, SimulatorServer


def _key(spec: str) -> SimKey:
    try:
        return parse_key_spec(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _order_limit(text: str) -> int | str | None:
    try:
        return parse_order_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _ip_limit(text: str) -> int | None:
    try:
        return parse_ip_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction within [0, 1], got {text}")
    return value


def _price(text: str) -> tuple[str, str]:
    symbol, sep, price = text.partition("=")
    if not sep or not symbol or not price:
        raise argparse.ArgumentTypeError(f"expected SYMBOL=PRICE, got {text!r}")
    return symbol, price


def _key_table() -> str:
    lines = ["built-in keys (fake credentials, valid only here; all bound to 127.0.0.1):"]
    for key in DEMO_KEYS:
        lines.append(f"  {key.api_key:<20} {key.secret:<28} user {key.user_id}  {key.note}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _key_table()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    parser.add_argument(
        "--order-limit",
        type=_order_limit,
        default=None,
        metavar="N|unlimited",
        help="order-create requests per second per account and category "
        "(default: Bybit's 10, or 20 for spot)",
    )
    parser.add_argument(
        "--ip-limit",
        type=_ip_limit,
        default=600,
        metavar="N|unlimited",
        help="requests per IP per --ip-window-ms before HTTP 403 (default 600)",
    )
    parser.add_argument("--ip-window-ms", type=int, default=5000)
    parser.add_argument(
        "--ip-ban-ms", type=int, default=600_000, help="how long an IP-limit breach bans (ms)"
    )
    parser.add_argument("--ip-ban", action="store_true", help="answer 403 to everything")
    parser.add_argument("--error-rate", type=_rate, default=0.0, help="fraction answered 502/503")
    parser.add_argument(
        "--lose-rate",
        type=_rate,
        default=0.0,
        help="fraction of order requests whose answer is lost",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay added to answers")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    parser.add_argument(
        "--clock-offset-ms", type=int, default=0, help="server clock minus host clock (ms)"
    )
    parser.add_argument(
        "--key",
        dest="keys",
        type=_key,
        action="append",
        default=[],
        metavar="API_KEY:SECRET[:USER_ID]",
        help="extra API key (repeatable)",
    )
    parser.add_argument(
        "--revoke", action="append", default=[], metavar="API_KEY", help="revoked key (repeatable)"
    )
    parser.add_argument(
        "--price",
        dest="prices",
        type=_price,
        action="append",
        default=[],
        metavar="SYMBOL=PRICE",
        help="ticker price (repeatable)",
    )
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        default=75.0,
        help="close a keep-alive connection idle this long (default 75)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        order_limit=args.order_limit,
        error_rate=args.error_rate,
        lose_rate=args.lose_rate,
        latency_ms=args.latency_ms,
        ip_ban=args.ip_ban,
        ip_limit=args.ip_limit,
        ip_window_ms=args.ip_window_ms,
        ip_ban_ms=args.ip_ban_ms,
        revoked=tuple(args.revoke),
        extra_keys=tuple(args.keys),
        prices=dict(args.prices),
        seed=args.seed,
        clock_offset_ms=args.clock_offset_ms,
        access_log=args.access_log,
        idle_timeout_s=args.idle_timeout_s,
    )


async def _serve(config: SimConfig, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with SimulatorServer(config, host=host, port=port) as sim:
            print(f"simulator listening on {sim.url}", flush=True)
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.access_log:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    asyncio.run(_serve(config, args.host, args.port))
    return 0
