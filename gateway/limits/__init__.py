"""Rate limits and quotas: per caller, per model or alias, and for the whole gateway.

    rules.py        Limit, Rules, Counter: what is configured (the LIMITS setting, the config
                    file's ``limits:`` block) and the counters one request is held to
    store.py        the store interface and MemoryStore (one process; the default)
    redis_store.py  RedisStore: the same counters in Redis, shared by every process (REDIS_URL)
    limiter.py      Limits.admit (a route reserves a request's cost, or gets a 429) and the fail
                    mode when the store is down; UNLIMITED when nothing is configured
    middleware.py   LimitsMiddleware: the x-ratelimit-* headers and the settlement of each answer

``create_app`` builds ``Limits.from_settings(settings)``: ``None`` when no limit is configured,
and then the routes hold ``UNLIMITED`` and no middleware is added.

This package's ``__init__`` imports only ``rules`` (the settings read it).
"""

from .rules import Counter, Limit, Rules, parse_limits

__all__ = ["Counter", "Limit", "Rules", "parse_limits"]
