"""A lean Redis connection for the calls in front of and behind every order.

redis-py spends 100-150 µs of CPU and loop turns on a round trip that takes
the server a few microseconds: pool checkout, command packing, response
callbacks, health checks. On the daemon's hot path (the blocking read, the
dedup claim with its budget grant, the ack with its result) that is most of
the daemon's own latency. ``Lean`` speaks RESP2 on one asyncio connection:
each call writes its command at once and waits for its reply in order, so
concurrent calls share the connection without waiting for one another.

It offers only what the hot path needs, shaped like redis-py's answers so
the callers need not care which one they hold: ``register_script`` (EVALSHA,
loading the script again when Redis lost it) and ``xreadgroup``. Errors are
redis-py's exception classes. Everything else stays on redis-py.

A blocking read holds its connection until it returns: give it a ``Lean`` of
its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float


class _Incomplete(Exception):
    """The buffer ends inside a reply; ``need``: bytes the buffer must hold first."""

    def __init__(self, need: int) -> None:
        self.need = need


_CRLF = b"\r\n"


def _parse(buf: bytearray, pos: int) -> tuple[Any, int]:
    """One RESP2 reply starting at ``pos``: (value, position after it)."""
    end = buf.find(_CRLF, pos)
    if end < 0:
        raise _Incomplete(len(buf) + 1)
    kind = buf[pos]
    if kind == 36:  # $ bulk string
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        start = end + 2
        stop = start + n
        if len(buf) < stop + 2:
            raise _Incomplete(stop + 2)
        return bytes(buf[start:stop]), stop + 2
    if kind == 42:  # * array
        n = int(buf[pos + 1 : end])
        if n < 0:
            return None, end + 2
        items = []
        pos = end + 2
        for _ in range(n):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == 58:  # : integer
        return int(buf[pos + 1 : end]), end + 2
    if kind == 43:  # + simple string
        return bytes(buf[pos + 1 : end]), end + 2
    if kind == 45:  # - error
        return _error(bytes(buf[pos + 1 : end]).decode(errors="replace")), end + 2
    raise RedisConnectionError(f"protocol error: unexpected reply type {chr(kind)!r}")


def _error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


def encode(args: Sequence[Arg]) -> bytes:
    """A command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a bool is not a Redis argument: send 0 or 1")
        elif isinstance(arg, int):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()
        else:
            raise TypeError(f"not a Redis argument: {type(arg).__name__}")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """One socket: replies are matched to calls in the order the calls were written."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Any]] = deque()
        # When each waiting call gives up (loop time): one timer watches the
        # oldest, which Redis answers first, so a call costs no timer of its own.
        self.deadlines: deque[float] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.buf = bytearray()
        self.need = 0
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if len(buf) < self.need:
            return
        pos = 0
        try:
            while pos < len(buf):
                value, pos = _parse(buf, pos)
                if not self.waiting:
                    raise RedisConnectionError("protocol error: a reply nobody asked for")
                future = self.waiting.popleft()
                self.deadlines.popleft()
                if future.done():
                    continue  # its caller gave up (cancelled or timed out)
                if isinstance(value, ResponseError):
                    future.set_exception(value)
                else:
                    future.set_result(value)
            self.need = 0
        except _Incomplete as short:
            self.need = short.need - pos
        except RedisConnectionError as exc:
            self._fail(exc)
            return
        except ValueError as exc:  # a length or integer that is not a number
            self._fail(RedisConnectionError(f"protocol error: {exc}"))
            return
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def _fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)
        self.deadlines.clear()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()

    def send(self, payload: bytes, timeout_s: float = float("inf")) -> asyncio.Future[Any]:
        """Write one command; its reply's future. No reply within ``timeout_s``
        fails it, and every call after it, and closes the connection."""
        if self.lost is not None:
            raise RedisConnectionError(str(self.lost))
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append(future)
        deadline = loop.time() + timeout_s
        self.deadlines.append(deadline)
        if self.timer is None and deadline != float("inf"):
            self.timer = loop.call_at(deadline, self._watch, timeout_s)
        self.transport.write(payload)
        return future

    def _watch(self, timeout_s: float) -> None:
        self.timer = None
        if not self.deadlines:
            return
        oldest = self.deadlines[0]
        loop = asyncio.get_running_loop()
        if loop.time() >= oldest:
            self._fail(RedisTimeoutError(f"no reply from Redis within {timeout_s:g} s"))
        elif oldest != float("inf"):
            self.timer = loop.call_at(oldest, self._watch, timeout_s)

    def close(self) -> None:
        self._fail(RedisConnectionError("Redis connection closed"))


class Lean:
    """One Redis connection (opened on first use, again after a loss), shared
    by concurrent callers. A call that gets no reply within ``timeout_s`` (plus
    its own blocking time) closes the connection: replies would no longer be
    known to match their calls."""

    def __init__(
        self, url: str, *, connect_timeout_s: float = 5.0, timeout_s: float = 30.0
    ) -> None:
        self._target = _Target.parse(url)
        self._connect_timeout_s = connect_timeout_s
        self._timeout_s = timeout_s
        self._conn: _Connection | None = None
        self._opening: asyncio.Lock | None = None
        self._closed = False

    async def execute(self, *args: Arg, blocks_s: float = 0.0) -> Any:
        conn = self._conn
        if conn is None or conn.lost is not None:
            conn = await self._open()
        return await conn.send(encode(args), self._timeout_s + blocks_s)

    async def _open(self) -> _Connection:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._conn is not None and self._conn.lost is None:
                return self._conn
            if self._closed:
                raise RedisConnectionError("Redis connection closed")
            conn = await self._target.connect(self._connect_timeout_s)
            if self._closed:  # closed while it connected
                conn.close()
                raise RedisConnectionError("Redis connection closed")
            self._conn = conn
            return conn

    def register_script(self, source: str) -> LeanScript:
        return LeanScript(self, source)

    async def xreadgroup(
        self,
        groupname: str,
        consumername: str,
        streams: Mapping[str, str],
        count: int | None = None,
        block: int | None = None,
    ) -> list[list[Any]] | None:
        """As redis-py answers it: [[stream, [(entry id, {field: value})]]]; an entry
        deleted while pending has no fields."""
        args: list[Arg] = [b"XREADGROUP", b"GROUP", groupname, consumername]
        if count is not None:
            args += [b"COUNT", count]
        if block is not None:
            args += [b"BLOCK", block]
        args.append(b"STREAMS")
        args += list(streams)
        args += list(streams.values())
        waits = float("inf") if block == 0 else (block or 0) / 1000  # BLOCK 0: forever
        reply = await self.execute(*args, blocks_s=waits)
        if reply is None:
            return None
        return [
            [name, [(entry[0], _pairs(entry[1])) for entry in entries]] for name, entries in reply
        ]

    async def aclose(self) -> None:
        """Close the connection; calls waiting on it fail, later calls too."""
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _pairs(flat: list[bytes] | None) -> dict[bytes, bytes]:
    if flat is None:
        return {}
    it = iter(flat)
    return dict(zip(it, it, strict=True))


class LeanScript:
    """``await script(keys=[...], args=[...])``, as redis-py's registered script."""

    def __init__(self, lean: Lean, source: str) -> None:
        self.script = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._lean = lean

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self._lean.execute(b"EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis lost its script cache (restart, SCRIPT FLUSH): EVAL caches it again.
            return await self._lean.execute(b"EVAL", self.script, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where and how to connect, from a redis://, rediss:// or unix:// URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: ssl.SSLContext | None = None

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        db_text = query.get("db")
        if parts.scheme == "unix":
            return cls(
                path=unquote(parts.path),
                username=username,
                password=password,
                db=int(db_text or 0),
            )
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("Redis URL must start with redis://, rediss:// or unix://")
        path = parts.path.lstrip("/")
        if path:
            db_text = path
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            username=username,
            password=password,
            db=int(db_text or 0),
            tls=_tls(query) if parts.scheme == "rediss" else None,
        )

    async def connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        where = self.path or f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(timeout_s):
                if self.path is not None:
                    _, conn = await loop.create_unix_connection(_Connection, self.path)
                else:
                    _, conn = await loop.create_connection(
                        _Connection,
                        self.host,
                        self.port,
                        ssl=self.tls,
                        server_hostname=self.host if self.tls else None,
                    )
                try:
                    await self._hello(conn)
                except BaseException:
                    conn.close()
                    raise
        except TimeoutError:
            raise RedisTimeoutError(
                f"Redis at {where}: no connection within {timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise RedisConnectionError(f"Redis at {where}: {exc.strerror or exc}") from None
        return conn

    async def _hello(self, conn: _Connection) -> None:
        """Log in and pick the database, in one round trip."""
        replies: list[asyncio.Future[Any]] = []
        if self.password is not None:
            auth: list[Arg] = [b"AUTH", self.password]
            if self.username:
                auth.insert(1, self.username)
            replies.append(conn.send(encode(auth)))
        if self.db:
            replies.append(conn.send(encode([b"SELECT", self.db])))
        for reply in replies:
            await reply


def _tls(query: Mapping[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=query.get("ssl_ca_certs"))
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif reqs == "optional":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_OPTIONAL
    if query.get("ssl_check_hostname", "").lower() in ("false", "0", "no"):
        context.check_hostname = False
    return context
