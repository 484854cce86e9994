"""JSON as the gateway reads it from clients and writes it to providers, within what orjson carries exactly.

orjson reads 1,024 nested levels but writes only 254, and reads an integer beyond 64 bits
(below -2**63 or above 2**64-1) as a float. A request the gateway cannot forward unchanged is the
client's 400, said once here, instead of a 500 at the encoder or a silently rounded number upstream.

>>> load_json(b'{"seed": 18446744073709551615}')
{'seed': 18446744073709551615}
>>> for body in (b'{"seed": -9223372036854775809}', b"[" * 255 + b"]" * 255):
...     try:
...         dump_json(load_json(body))
...     except InvalidRequest as exc:
...         print(exc.code)
integer_out_of_range
invalid_json
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import orjson

from .errors import InvalidRequest

__all__ = ["MAX_DEPTH", "check_integers", "dump_json", "load_json"]

MAX_DEPTH = 254  # the nesting orjson.dumps writes

# A byte that may belong to a number maps to "0", any other to " ": a run of 20 zeros is the only
# place an integer orjson cannot read exactly (20 digits, or a minus and 19) can hide.
_NUMBERISH = bytes(0x30 if 0x30 <= b <= 0x39 or b == 0x2D else 0x20 for b in range(256))
_LONG_RUN = b"0" * 20
_LOW, _HIGH = -(2**63), 2**64 - 1


def too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"The request nests JSON more than {MAX_DEPTH} levels deep (the request object counts as one), "
        "deeper than the gateway can forward. Flatten it.",
        code="invalid_json",
    )


def load_json(body: bytes) -> Any:
    """The client's JSON; not JSON, too deep or holding an integer beyond 64 bits is a 400."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise too_deep() from None
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    check_integers(body)
    return value


def check_integers(body: bytes) -> None:
    """A 400 if JSON ``body`` holds an integer orjson reads as a float (beyond 64 bits)."""
    # The common body has no run of 20 digits: one C-speed pass (about 0.75 ns a byte) and no parse.
    if _LONG_RUN not in body.translate(_NUMBERISH):
        return
    # Read the body again with the standard library, which shows each integer's digits.
    with contextlib.suppress(RecursionError):  # nested past Python's stack: refused when written
        json.loads(body, parse_int=_exact_int)


def _exact_int(text: str) -> int:
    if len(text) >= 19 and (len(text) > 20 or not _LOW <= int(text) <= _HIGH):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidRequest(
            f"The request holds the integer {shown}, outside the 64-bit range the gateway carries exactly "
            "(-2**63 to 2**64-1). Send it as a string or a smaller number.",
            code="integer_out_of_range",
        )
    return 0  # the value is not kept: orjson's parse is the one used


def dump_json(value: Any) -> bytes:
    """``value`` as JSON for a provider; nesting orjson cannot write is the client's 400."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        if "Recursion limit" not in str(exc):
            raise
        raise too_deep() from None
