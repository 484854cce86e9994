"""The ``polyrelay`` command (also ``python -m gateway``).

polyrelay serve [--config FILE] [--host HOST] [--port PORT]   start the gateway (the default)
polyrelay providers [--config FILE]                           the registry, and what is configured
polyrelay check-config [--config FILE]                        validate the settings, exit 1 if bad
polyrelay gateways list|get ID|create --file F|delete ID       the gateways management API (gateways.cli)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence

from .gateways import cli as gateways_cli
from .settings import Settings, SettingsError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyrelay", description="OpenAI-compatible gateway to many LLM providers.")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="start the gateway (default)")
    serve.add_argument("--host", help="bind address (overrides SERVER_HOST)")
    serve.add_argument("--port", type=int, help="port (overrides SERVER_PORT)")
    for name, help_text in (("providers", "list the provider registry"), ("check-config", "validate settings")):
        commands.add_parser(name, help=help_text)
    for sub in commands.choices.values():
        sub.add_argument("--config", help="YAML settings file (or GATEWAY_CONFIG); the environment wins over it")
    new_key = commands.add_parser("new-key", help="make a static API key and print how to configure it")
    new_key.add_argument("name", help="the key's name, shown in logs (letters, digits, - and _)")
    new_key.add_argument("--models", default="", help="comma list of models the key may use (default: any)")
    new_key.add_argument("--role", choices=("admin", "viewer"), help="its role on the gateways management API")
    gateways_cli.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, gateways_environ: Mapping[str, str] | None = None) -> int:
    """``gateways_environ``: what ``polyrelay gateways`` reads its URL and token from (default the
    process's environment)."""
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "new-key":
        return _new_key(args.name, args.models, args.role or "")
    if command == "gateways":
        return gateways_cli.run(args, os.environ if gateways_environ is None else gateways_environ)
    environ = dict(os.environ)
    if getattr(args, "host", None):
        environ["SERVER_HOST"] = args.host
    if getattr(args, "port", None):
        environ["SERVER_PORT"] = str(args.port)
    try:
        settings = Settings.load(environ, getattr(args, "config", None))
    except SettingsError as exc:
        print(f"polyrelay: configuration error: {exc}", file=sys.stderr)
        return 1
    if command == "providers":
        _print_providers(settings)
        return 0
    if command == "check-config":
        configured = ", ".join(p.id for p in settings.configured_providers) or "none"
        print(f"Configuration is valid. Providers configured: {configured}.")
        return 0
    if settings.config_file:
        environ["GATEWAY_CONFIG"] = settings.config_file
    return _serve(settings, environ)


def _new_key(name: str, models: str, role: str = "") -> int:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        print("polyrelay: a key name is 1 to 64 letters, digits, - or _.", file=sys.stderr)
        return 1
    key = "pr-" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    listed = "|".join(m.strip() for m in models.split(",") if m.strip())
    print(f"Key (give it to the caller; it is not stored anywhere): {key}")
    print(
        f"Environment:  AUTH_API_KEYS={name}:{digest}"
        + (f":{listed}" if listed or role else "")
        + (f":{role}" if role else "")
    )
    print(
        f"Config file:  auth: {{api_keys: [{{name: {name}, sha256: {digest}"
        + (f", models: [{', '.join(listed.split('|'))}]" if listed else "")
        + (f", role: {role}" if role else "")
        + "}]}"
    )
    return 0


def _print_providers(settings: Settings) -> None:
    rows = [("PROVIDER", "CONFIGURED", "ADAPTER", "URL")]
    for provider in settings.providers.values():
        state = "yes" if provider.configured else f"no (set {provider.spec.env_prefix}_API_KEY)"
        rows.append((provider.id, state, provider.spec.adapter, provider.url))
    for upstream in settings.aliases.upstreams.values():  # alias deployments with their own URL or key
        rows.append((upstream.name, "yes (alias deployment)", upstream.spec.adapter, upstream.url))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])


def _serve(settings: Settings, environ: dict[str, str]) -> int:
    from .app import create_app
    from .server import GatewayServer, uvicorn_config
    from .telemetry.logs import configure_logging
    from .workers import Supervisor

    # One format for every line, uvicorn's included; uvicorn applies it again in each worker.
    log_config = configure_logging(settings)
    workers = settings.server_workers or os.cpu_count() or 1
    options = dict(
        host=settings.server_host,
        port=settings.server_port,
        loop="uvloop",
        ssl_certfile=settings.server_tls_cert_path or None,
        ssl_keyfile=settings.server_tls_key_path or None,
        log_config=log_config,
        access_log=False,  # the request log (gateway.telemetry.logs) says more, in the same format
        workers=workers,
    )
    if workers > 1:
        # Each worker process builds its own app (and pool) from the same environment.
        os.environ.update(environ)
        config = uvicorn_config(settings, "gateway.app:app_from_environment", factory=True, **options)
        with contextlib.ExitStack() as stack:
            worker_gone = None
            if settings.telemetry_enabled:  # the workers write their metrics, the supervisor serves them
                from .telemetry.scrape import WorkersMetrics

                try:
                    worker_gone = stack.enter_context(WorkersMetrics(settings)).worker_gone
                except OSError as exc:
                    logging.getLogger("polyrelay").error("%s", exc)
                    return 1
            return Supervisor(config, [config.bind_socket()], on_worker_gone=worker_gone).run()
    server = GatewayServer(uvicorn_config(settings, create_app(settings), **options))
    # The SIGINT that stopped the server is raised again once it has.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
