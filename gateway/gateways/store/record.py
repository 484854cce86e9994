"""A stored gateway (``Record``) and its row: the spec and status as JSON text, with the columns the
queries need (organization, revision, times), shared by both backends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ..schema import render_spec, render_status, stored_spec
from ..spec import Condition, GatewaySpec, GatewayStatus

__all__ = ["Record", "Row", "from_row", "now", "precise", "seconds", "to_row"]

# id, organization_id, spec, status, revision, created_at, updated_at
Row = tuple[str, str, str, str, int, str, str]


@dataclass(frozen=True, slots=True)
class Record:
    """A gateway as stored. ``revision`` counts every write of the row (spec or status): a write
    is made against the revision it read, so two replicas recording the same transition write once."""

    spec: GatewaySpec
    status: GatewayStatus
    revision: int = 0


def now() -> datetime:
    return datetime.now(UTC)


def seconds(moment: datetime) -> str:
    """RFC 3339 in UTC to the second, as the API shows times: 2026-12-01T17:00:00Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise(moment: datetime) -> str:
    """The stored ``updated_at``: to the microsecond, fixed width, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_row(record: Record, updated_at: datetime) -> Row:
    """The row written at ``updated_at``; its ``created_at`` (the list's order, to the microsecond)
    is used by an insert only: an update leaves the stored one."""
    status = render_status(record.status)
    status["generation"] = record.status.generation
    spec = record.spec
    return (
        spec.id,
        spec.organization_id,
        orjson.dumps(render_spec(spec, reveal=True)).decode(),
        orjson.dumps(status).decode(),
        record.revision,
        precise(updated_at),
        precise(updated_at),
    )


def from_row(row: Any) -> Record:
    status: dict[str, Any] = orjson.loads(row[3])
    return Record(
        spec=stored_spec(orjson.loads(row[2])),
        status=GatewayStatus(
            status=status["status"],
            created_at=status["createdAt"],
            updated_at=status["updatedAt"],
            conditions=tuple(
                Condition(
                    type=c["type"],
                    status=c["status"],
                    reason=c["reason"],
                    message=c["message"],
                    last_update_time=c["lastUpdateTime"],
                    zone=c.get("zone", ""),
                )
                for c in status["conditions"]
            ),
            endpoints=tuple(status["endpoints"]),
            generation=int(status.get("generation", 1)),
        ),
        revision=int(row[4]),
    )
