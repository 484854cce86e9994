"""``Policies``: the Rego files of GUARDRAILS_POLICY_DIR, compiled once, and ``Decision``.

Every ``.rego`` file of the directory is one module; together they must define
``data.guardrails.main``, a rule whose value is the decision: ``{"action": "allow" | "block" |
"redact" | "warn", "message": "..."}``. Evaluation is regopy's (the Rego interpreter rego-cpp):
the modules are built into a bundle at start-up, so a request costs one query (about 0.1 ms for a
small policy), run on the event loop without awaiting, so one interpreter serves every request.

    policies = Policies.load("/etc/polyrelay/policies")   # PolicyError if a file does not compile
    decision = policies.decide({"phase": "pre_call", "path": "/v1/chat/completions", ...})
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["ACTIONS", "ALLOW", "Decision", "EvaluationError", "Policies", "PolicyError"]

ACTIONS = ("allow", "block", "redact", "warn")
_ENTRYPOINT = "guardrails/main"


class PolicyError(ValueError):
    """A policy file cannot be read or compiled: start-up stops, naming it."""


class EvaluationError(RuntimeError):
    """A check could not be run (a policy conflict, the detector down...): GUARDRAILS_FAIL_MODE decides."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: str = "allow"
    message: str = ""

    @classmethod
    def of(cls, value: Any) -> Decision:
        """A decision from a policy's or detector's value; anything without an action allows, as
        inference-gateway reads it, and an unknown action is an error, not a silent allow."""
        if not isinstance(value, dict):
            return ALLOW
        action = value.get("action") or "allow"
        if action not in ACTIONS:
            raise EvaluationError(f"the decision's action {action!r} is none of {', '.join(ACTIONS)}")
        message = value.get("message")
        return cls(str(action), message if isinstance(message, str) else "")


ALLOW = Decision()


class Policies:
    def __init__(self, interpreter: Any, bundle: Any, files: tuple[str, ...]) -> None:
        self.interpreter = interpreter
        self.bundle = bundle
        self.files = files

    @classmethod
    def load(cls, directory: str | Path) -> Policies | None:
        """The compiled policies of ``directory``, or ``None`` when it holds no ``.rego`` file."""
        paths = sorted(p for p in Path(directory).iterdir() if p.suffix == ".rego" and p.is_file())
        if not paths:
            return None
        from regopy import Interpreter, RegoError  # the interpreter loads only when guardrails are on

        interpreter = Interpreter()
        try:
            for path in paths:
                interpreter.add_module(path.name, path.read_text(encoding="utf-8"))
            bundle = interpreter.build(None, [_ENTRYPOINT])
        except (OSError, UnicodeDecodeError, RegoError) as exc:
            raise PolicyError(f"GUARDRAILS_POLICY_DIR={directory}: the policies do not compile: {exc}") from exc
        return cls(interpreter, bundle, tuple(p.name for p in paths))

    def decide(self, document: dict[str, Any]) -> Decision:
        from regopy import Input, RegoError

        try:
            self.interpreter.set_input(Input(document))
            output = self.interpreter.query_bundle_entrypoint(self.bundle, _ENTRYPOINT)
        except RegoError as exc:
            raise EvaluationError(f"the policies failed: {exc}") from exc
        if not output.ok():
            raise EvaluationError(f"the policies failed: {output}")
        text = str(output)
        if text == "undefined":  # no rule matched and no default: nothing to refuse
            return ALLOW
        expressions = orjson.loads(text).get("expressions") or [None]
        return Decision.of(expressions[0])
