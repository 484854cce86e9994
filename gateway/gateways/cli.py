"""``polyrelay gateways ...``: the management API from a shell, over HTTP like any client.

    polyrelay gateways list [--updated-after 2026-12-01T17:00:00Z]
    polyrelay gateways get ID
    polyrelay gateways create --file spec.json      (``-`` reads standard input)
    polyrelay gateways update ID --file spec.json   (PATCH: the whole spec)
    polyrelay gateways delete ID
    polyrelay gateways parameters

``--url`` (or ``POLYRELAY_GATEWAYS_URL``, default ``http://127.0.0.1:8081``) is the management API's
base; the bearer token is read from ``POLYRELAY_GATEWAYS_TOKEN`` (never from the command line,
where other users could see it). Answers are printed as JSON; a refusal prints its message on
standard error and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["TOKEN_ENV", "URL_ENV", "add_parser", "run"]

URL_ENV = "POLYRELAY_GATEWAYS_URL"
TOKEN_ENV = "POLYRELAY_GATEWAYS_TOKEN"
DEFAULT_URL = "http://127.0.0.1:8081"
_PATH = "/v1alpha1/inference/gateways"


def add_parser(commands: Any) -> None:
    """The ``gateways`` command and its subcommands, on ``polyrelay``'s subparsers."""
    gateways = commands.add_parser("gateways", help="create, list, get and delete gateways (the management API)")
    gateways.add_argument("--url", help=f"the management API's base URL (or {URL_ENV}; default {DEFAULT_URL})")
    actions = gateways.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the gateways of your organization")
    listing.add_argument("--updated-after", help="only those changed after this ISO 8601 time")
    for name, help_text in (("get", "one gateway"), ("delete", "delete a gateway (it drains first)")):
        actions.add_parser(name, help=help_text).add_argument("id")
    create = actions.add_parser("create", help="create a gateway from a JSON spec")
    create.add_argument("--file", required=True, help="the spec (JSON); - for standard input")
    update = actions.add_parser("update", help="replace a gateway's spec (PATCH)")
    update.add_argument("id")
    update.add_argument("--file", required=True, help="the whole spec (JSON); - for standard input")
    actions.add_parser("parameters", help="the zones a gateway may name")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    base = (args.url or environ.get(URL_ENV) or DEFAULT_URL).rstrip("/") + _PATH
    token = environ.get(TOKEN_ENV, "")
    try:
        method, url, body = _request(args, base)
    except (OSError, ValueError) as exc:
        print(f"polyrelay: {exc}", file=sys.stderr)
        return 1
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            document = json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        print(f"polyrelay: {error.code}: {_message(error.read())}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"polyrelay: cannot reach the management API at {base}: {reason}", file=sys.stderr)
        return 1
    print(json.dumps(document, indent=2))
    return 0


def _request(args: argparse.Namespace, base: str) -> tuple[str, str, bytes | None]:
    action = args.action
    if action == "list":
        query = f"?{urllib.parse.urlencode({'updatedAfter': args.updated_after})}" if args.updated_after else ""
        return "GET", base + query, None
    if action == "parameters":
        return "GET", f"{base}/parameters", None
    if action == "create":
        return "POST", base, _spec(args.file)
    gateway = f"{base}/{urllib.parse.quote(args.id, safe='')}"
    if action == "update":
        return "PATCH", gateway, _spec(args.file)
    return ("GET" if action == "get" else "DELETE"), gateway, None


def _spec(path: str) -> bytes:
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    return text.encode()


def _message(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")[:500]
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return str(document["message"])
    return json.dumps(document)[:500]
