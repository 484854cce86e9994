"""Counters in Redis, shared by every process and replica that names the same ``REDIS_URL``.

Each admission and each settlement is one Lua script (atomic on the server, the clock being
Redis's own ``TIME`` so replicas with skewed clocks agree). The scripts called while a batch is on
the wire go together in the next one: one write and one read for many requests, where each script
alone cost a write and a read of its own (on loopback, most of a round trip's CPU is those calls). The arithmetic is
``store.MemoryStore``'s: a GCRA arrival time per rate counter (a string of milliseconds, expiring
when the bucket is full again), an ``INCRBY`` sum per quota counter and UTC day, and a sorted set
of leases per concurrency counter (a lease expires after ``LEASE`` so a crashed process's requests
stop counting). One Redis server (or primary) is assumed: the quota's day key is made in the
script, which Redis Cluster would refuse.

redis-py is imported here only, and this module only when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from .rules import Counter
from .store import StoreUnavailable, Verdict

__all__ = ["LEASE", "RedisStore"]

LEASE = 600.0  # seconds a request in flight counts against concurrency without finishing
TIMEOUT = 0.5  # a Redis slower than this is taken for down: the fail mode beats a stalled request
_KINDS = {"rate": "r", "quota": "q", "concurrency": "c"}

# ARGV: lease member, lease ms, then per key: kind, limit, period ms, cost.
# Returns: refused index (-1: admitted), retry ms, then per key remaining, reset ms (after this request
# when admitted, without it when refused).
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(tonumber(t[1]) / 86400)
local midnight = (day + 1) * 86400000 - now
local out, values, kept = {-1, 0}, {}, {}
for i = 1, #KEYS do
  local a = 3 + (i - 1) * 4
  local kind, limit, period, cost = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local remaining, reset, wait, held
  if kind == 'r' then
    local interval = period / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    held = tat - now
    values[i] = tat + cost * interval
    reset = values[i] - now
    wait = reset - period
    remaining = math.floor((period - reset) / interval + 1e-9)
    kept[2 * i - 1], kept[2 * i] = math.floor((period - held) / interval + 1e-9), math.ceil(held)
  elseif kind == 'q' then
    values[i] = tonumber(redis.call('GET', KEYS[i] .. ':' .. day) or 0) + cost
    remaining, reset, wait = limit - values[i], midnight, 0
    if values[i] > limit then wait = midnight end
    kept[2 * i - 1], kept[2 * i] = limit - values[i] + cost, midnight
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    values[i] = redis.call('ZCARD', KEYS[i]) + cost
    remaining, reset, wait = limit - values[i], 0, 0
    if values[i] > limit then wait = 1000 end
    kept[2 * i - 1], kept[2 * i] = limit - values[i] + cost, 0
  end
  if remaining < 0 then remaining = 0 end
  if kept[2 * i - 1] < 0 then kept[2 * i - 1] = 0 end
  if wait > 0.000001 and wait > out[2] then out[1], out[2] = i - 1, wait end
  out[#out + 1] = remaining
  out[#out + 1] = math.ceil(reset)
end
if out[1] >= 0 then
  -- refused: nothing is taken, so the standing is what is left without this request
  local refused = {out[1], math.ceil(out[2])}
  for j = 1, #kept do refused[j + 2] = kept[j] end
  return refused
end
for i = 1, #KEYS do
  local kind = ARGV[3 + (i - 1) * 4]
  if kind == 'r' then
    redis.call('SET', KEYS[i], tostring(values[i]), 'PX', math.ceil(values[i] - now) + 1000)
  elseif kind == 'q' then
    redis.call('SET', KEYS[i] .. ':' .. day, values[i], 'PX', midnight + 3600000)
  elseif tonumber(ARGV[3 + (i - 1) * 4 + 3]) > 0 then
    redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
  end
end
return out
"""

# ARGV: lease member, then per key: kind, limit, period ms, delta.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(tonumber(t[1]) / 86400)
local midnight = (day + 1) * 86400000 - now
for i = 1, #KEYS do
  local a = 2 + (i - 1) * 4
  local kind, limit, period, delta = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    tat = tat + delta * period / limit
    if tat > now then
      redis.call('SET', KEYS[i], tostring(tat), 'PX', math.ceil(tat - now) + 1000)
    else
      redis.call('DEL', KEYS[i])
    end
  elseif kind == 'q' then
    local key = KEYS[i] .. ':' .. day
    if redis.call('INCRBY', key, delta) < 0 then redis.call('SET', key, 0) end
    redis.call('PEXPIRE', key, midnight + 3600000)
  else
    redis.call('ZREM', KEYS[i], ARGV[1])
  end
end
return 0
"""


class RedisStore:
    """The store behind ``REDIS_URL`` (``redis://[:password@]host:port/db``, ``rediss://`` for TLS)."""

    name = "redis"

    def __init__(self, url: str, prefix: str = "polyrelay:limits:") -> None:
        # No retries inside the client: a refused connection is reported at once and the fail mode
        # applies, rather than holding the caller through a backoff.
        self._redis = aioredis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0)
        )
        self._prefix = prefix
        parts = urlsplit(url)  # where, for the logs: host and port, never the password
        self.location = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._sources = {self._admit.sha: _ADMIT, self._settle.sha: _SETTLE}  # for a server that lost them
        self._lease_ms = str(int(LEASE * 1000))
        self._queue: list[tuple[tuple[str | int, ...], asyncio.Future[Any]]] = []  # for the next batch
        self._sender: asyncio.Task[None] | None = None  # sends batches while there are any

    async def admit(self, counters: Sequence[Counter], costs: Sequence[int], lease: str) -> Verdict:
        keys, args = self._arguments(counters, costs)
        out = await self._run(self._admit.sha, keys, [lease, self._lease_ms, *args])
        refused = int(out[0])
        standing = tuple((int(out[i]), int(out[i + 1]) / 1000) for i in range(2, len(out), 2))
        return Verdict(None if refused < 0 else refused, int(out[1]) / 1000, standing)

    async def settle(self, counters: Sequence[Counter], deltas: Sequence[int], lease: str) -> None:
        keys, args = self._arguments(counters, deltas)
        await self._run(self._settle.sha, keys, [lease, *args])

    async def _run(self, sha: str, keys: list[str], args: list[str | int]) -> Any:
        """One script's answer, sent in the next batch."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((("EVALSHA", sha, len(keys), *keys, *args), future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())
        try:
            return await future
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    async def _send(self) -> None:
        """Each batch on one connection of the pool; the scripts queued meanwhile go in the next."""
        batch: list[tuple[tuple[str | int, ...], asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    replies = await self._execute([command for command, _ in batch])
                except (RedisError, OSError) as exc:
                    replies = [exc] * len(batch)
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its request was cancelled (the client left)
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sender = None
            left, self._queue = [*batch, *self._queue], []  # all answered, unless the sender was cancelled
            for _, future in left:  # then none waits forever
                if not future.done():
                    future.set_exception(ConnectionError("the limits store's sender stopped"))

    async def _execute(self, commands: list[tuple[str | int, ...]]) -> list[Any]:
        pool = self._redis.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        try:
            replies = await self._exchange(connection, commands)
            lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if lost:  # a restarted (or flushed) server: load the scripts again and resend those
                for sha in {commands[i][1] for i in lost}:
                    await connection.send_command("SCRIPT", "LOAD", self._sources[str(sha)])
                    await connection.read_response()
                for i, reply in zip(lost, await self._exchange(connection, [commands[i] for i in lost]), strict=True):
                    replies[i] = reply
            return replies
        except BaseException:
            await connection.disconnect()  # a reply left unread would answer the next batch's first script
            raise
        finally:
            await pool.release(connection)

    @staticmethod
    async def _exchange(connection: Any, commands: list[tuple[str | int, ...]]) -> list[Any]:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:  # that script's error, read in full: the next reply follows
                replies.append(exc)
        return replies

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        await self._redis.aclose()

    def _arguments(self, counters: Sequence[Counter], amounts: Sequence[int]) -> tuple[list[str], list[str | int]]:
        keys = [self._prefix + c.key for c in counters]
        args: list[str | int] = []
        for counter, amount in zip(counters, amounts, strict=True):
            args += [_KINDS[counter.kind], counter.limit, int(counter.period * 1000), amount]
        return keys, args


def _describe(exc: BaseException) -> str:
    # redis-py's messages name the host and port, never the password of the URL.
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
