"""Guardrails (GUARDRAILS_ENABLED): policies that may refuse, pass or redact what goes through.

Four points are checked, each with one input document, as inference-gateway's guardrails build it:
``{"method", "path", "phase", "request": {"body", "model"}, "identity"}``, ``phase`` one of
``pre_call`` (the request, before anything is called), ``post_call`` (a JSON answer, before the
client gets it), ``tool_args`` and ``tool_output`` (an MCP tool call run by the gateway: ``method``
is ``TOOL_CALL``, ``path`` the tool's name, ``body`` its arguments or its result).

    policy     Policies (the Rego files, compiled at start-up) and Decision
    external   ExternalDetector (GUARDRAILS_EXTERNAL_URL)
    redact     what a ``redact`` decision removes (credentials, card numbers)
    middleware GuardrailsMiddleware: pre_call and post_call around every route but the probes

A ``block`` from either refuses with 403 ``guardrail_blocked`` and the policy's message; a check
that cannot run refuses too (GUARDRAILS_FAIL_MODE=closed, the default) or passes (``open``).

    guardrails = Guardrails.from_settings(settings, http)   # None when off: nothing on the path
    decision = await guardrails.decide(document)
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .policy import ALLOW, Decision, EvaluationError, Policies, PolicyError
from .redact import redact_text

if TYPE_CHECKING:
    from providers import HttpClient

    from ..settings import Settings
    from .external import ExternalDetector

__all__ = ["IDENTITY", "Decision", "Guardrails", "PolicyError"]

log = logging.getLogger("polyrelay")

# The caller's identity document, set by the middleware for the tool checks of its request.
IDENTITY: ContextVar[dict[str, Any] | None] = ContextVar("polyrelay_guardrails_identity", default=None)


class Guardrails:
    def __init__(self, policies: Policies | None, external: ExternalDetector | None, fail_open: bool) -> None:
        self.policies = policies
        self.external = external
        self.fail_open = fail_open

    @classmethod
    def from_settings(cls, settings: Settings, http: HttpClient) -> Guardrails | None:
        if not settings.guardrails_enabled:
            return None
        policies = Policies.load(settings.guardrails_policy_dir) if settings.guardrails_policy_dir else None
        external = None
        if settings.guardrails_external_url:
            from .external import ExternalDetector

            external = ExternalDetector(settings.guardrails_external_url, http, settings.guardrails_external_timeout)
        if policies is None and external is None:
            log.warning(
                "GUARDRAILS_ENABLED=true with no policy (GUARDRAILS_POLICY_DIR holds no .rego file, or is unset) "
                "and no GUARDRAILS_EXTERNAL_URL: every request passes."
            )
        else:
            log.info(
                "guardrails on: %s%s",
                f"policies {', '.join(policies.files)}" if policies else "no policy",
                f", external detector {settings.guardrails_external_url}" if external else "",
            )
        return cls(policies, external, settings.guardrails_fail_mode == "open")

    async def decide(self, document: dict[str, Any]) -> Decision:
        """The decision on ``document``: the policies' then the detector's (a block from either
        wins), with GUARDRAILS_FAIL_MODE applied to a check that could not run."""
        try:
            decision = self.policies.decide(document) if self.policies is not None else ALLOW
            if decision.action != "block" and self.external is not None:
                found = await self.external.decide(document)
                if found.action == "block" or decision.action == "allow":
                    decision = found
        except EvaluationError as exc:
            if self.fail_open:
                log.warning(
                    "guardrails: the %s check failed, passed (GUARDRAILS_FAIL_MODE=open): %s",
                    document.get("phase"),
                    exc,
                )
                return ALLOW
            log.error("guardrails: the %s check failed, refused: %s", document.get("phase"), exc)
            return Decision("block", "The request could not be checked by the gateway's guardrails.")
        if decision.action == "block":
            log.info("guardrails: %s on %s blocked: %s", document.get("phase"), document.get("path"), decision.message)
        elif decision.action == "warn":
            log.warning("guardrails: %s on %s: %s", document.get("phase"), document.get("path"), decision.message)
        return decision

    # -- MCP tool calls (gateway.mcp.tools.Toolbox's guard) -------------------------------------

    async def tool_args(self, tool: str, arguments: str) -> tuple[str | None, str]:
        """(a refusal for the model, or None; the arguments, redacted when the policy says so)."""
        decision = await self.decide(_tool_document(tool, "tool_args", arguments))
        return _refusal(decision), redact_text(arguments) if decision.action == "redact" else arguments

    async def tool_output(self, tool: str, output: str) -> tuple[str | None, str]:
        decision = await self.decide(_tool_document(tool, "tool_output", output))
        return _refusal(decision), redact_text(output) if decision.action == "redact" else output


def _tool_document(tool: str, phase: str, body: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "method": "TOOL_CALL",
        "path": tool,
        "phase": phase,
        "request": {"body": body, "model": ""},
    }
    identity = IDENTITY.get()
    if identity is not None:
        document["identity"] = identity
    return document


def _refusal(decision: Decision) -> str | None:
    if decision.action != "block":
        return None
    return f"Blocked by the gateway's guardrails: {decision.message or 'this tool call is not allowed'}."
