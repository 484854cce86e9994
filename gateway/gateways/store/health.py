"""``StoreHealth``: a store's outages, told to the log once per spell rather than once per failure.

While a database is away every read, write and reconnect of every process fails, several times a
second: the first failure of a spell is a warning (what fails, and that the gateways keep serving
as they are), a reminder follows every ``REMIND`` seconds while it lasts, the rest are DEBUG, and
the first success after it says the store is back.

    health = StoreHealth()
    health.failed(exc)   # before raising StoreError
    health.ok()          # after a call that worked (a bool test while nothing is wrong)
"""

from __future__ import annotations

import logging
import time

__all__ = ["REMIND", "StoreHealth"]

log = logging.getLogger("polyrelay")

REMIND = 60.0  # seconds between warnings while an outage lasts


class StoreHealth:
    def __init__(self) -> None:
        self.down_since: float | None = None  # monotonic; None while the store answers
        self._warned_at = 0.0

    def failed(self, exc: BaseException) -> None:
        moment = time.monotonic()
        if self.down_since is None:
            self.down_since = self._warned_at = moment
            log.warning(
                "gateways: the gateways store is unreachable (%s); the gateways serve as they are, the management "
                "API answers 503, and changes apply once it is back",
                exc,
            )
        elif moment - self._warned_at >= REMIND:
            self._warned_at = moment
            log.warning(
                "gateways: the gateways store is still unreachable after %.0fs (%s)", moment - self.down_since, exc
            )
        else:
            log.debug("gateways: the gateways store failed: %s", exc)

    def ok(self) -> None:
        if self.down_since is not None:
            log.info("gateways: the gateways store is reachable again after %.0fs", time.monotonic() - self.down_since)
            self.down_since = None
