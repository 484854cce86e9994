"""Counters in Redis, shared by every process and replica that names the same ``REDIS_URL``.

Each admission and each settlement is one Lua script (one round trip, atomic on the server, the
clock being Redis's own ``TIME`` so replicas with skewed clocks agree). The arithmetic is
``store.MemoryStore``'s: a GCRA arrival time per rate counter (a string of milliseconds, expiring
when the bucket is full again), an ``INCRBY`` sum per quota counter and UTC day, and a sorted set
of leases per concurrency counter (a lease expires after ``LEASE`` so a crashed process's requests
stop counting). One Redis server (or primary) is assumed: the quota's day key is made in the
script, which Redis Cluster would refuse.

redis-py is imported here only, and this module only when ``REDIS_URL`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

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
        self._lease_ms = str(int(LEASE * 1000))

    async def admit(self, counters: Sequence[Counter], costs: Sequence[int], lease: str) -> Verdict:
        keys, args = self._arguments(counters, costs)
        try:
            out = await self._admit(keys=keys, args=[lease, self._lease_ms, *args])
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(_describe(exc)) from exc
        refused = int(out[0])
        standing = tuple((int(out[i]), int(out[i + 1]) / 1000) for i in range(2, len(out), 2))
        return Verdict(None if refused < 0 else refused, int(out[1]) / 1000, standing)

    async def settle(self, counters: Sequence[Counter], deltas: Sequence[int], lease: str) -> None:
        keys, args = self._arguments(counters, deltas)
        try:
            await self._settle(keys=keys, args=[lease, *args])
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    async def close(self) -> None:
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
