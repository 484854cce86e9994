"""The shipped artefacts agree with the code: openapi.yaml, the Dockerfile, the wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from starlette.routing import Route

from gateway import Settings, create_app
from gateway.chat import validate_chat
from providers.errors import InvalidRequest

ROOT = Path(__file__).parent.parent


def app_operations() -> set[tuple[str, str]]:
    app = create_app(Settings.load({"ROUTING_STRATEGY": "path", "ENABLE_IMAGES": "true"}))  # every route there is
    return operations_of(app.routes)


def management_operations() -> set[tuple[str, str]]:
    """The gateways management API's, served on a port of its own (GATEWAYS_PORT)."""
    from gateway.gateways.api import management_app
    from gateway.gateways.service import NoDataPlanes
    from gateway.gateways.store import open_store

    return operations_of(management_app(open_store("sqlite:///unopened.db"), NoDataPlanes(), enabled=False).routes)


def operations_of(routes: list[Any]) -> set[tuple[str, str]]:
    operations = set()
    for route in routes:
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        # OpenAPI has no CONNECT (the proxy takes it).
        operations |= {(path, m.lower()) for m in route.methods or () if m not in ("HEAD", "CONNECT")}
    return operations


def documented_operations(*, management: bool) -> set[tuple[str, str]]:
    """openapi.yaml's operations: those of the data plane, or of the management API (the paths
    whose ``servers`` name a port of their own)."""
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return {
        (path, method)
        for path, item in spec["paths"].items()
        if ("servers" in item) == management
        for method in item
        if method not in ("parameters", "servers")
    }


def test_openapi_paths_and_methods_equal_the_routes() -> None:
    assert documented_operations(management=False) == app_operations()


def test_openapi_management_paths_equal_the_management_routes() -> None:
    assert documented_operations(management=True) == management_operations()


def test_openapi_error_schema_is_the_envelope() -> None:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"message", "type", "code", "param"}


def test_dockerfile_is_consistent_with_the_repository() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repository"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'ENTRYPOINT ["polyrelay"]' in text and "polyrelay" in scripts
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M), "the image must not run as root"
    assert "SERVER_HOST=0.0.0.0" in text and re.search(r"^EXPOSE 8080$", text, re.M)
    assert "/health" in text.split("HEALTHCHECK", 1)[1]
    assert text.count("FROM ") >= 2 and "-slim" in text


def test_wheel_holds_the_two_packages_and_the_registry(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("polyrelay-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if not n.startswith("polyrelay-")} == {"gateway", "providers"}
    assert "providers/providers.yaml" in names
    assert "gateway/inference_gateway.yaml" in names  # read by Settings.load at start-up
    assert not any(n.startswith("tests/") for n in names)


# -- the chat request's messages: what openapi.yaml declares is what validate_chat checks --------


def message_validator() -> jsonschema.Draft202012Validator:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return jsonschema.Draft202012Validator({"$ref": "#/components/schemas/Message", "components": spec["components"]})


def gateway_verdict(message: Any) -> str | None:
    """None when validate_chat accepts ``message`` (as messages[1]), else the param it names."""
    body = orjson.dumps({"model": "openai/echo", "messages": [{"role": "user", "content": "hi"}, message]})
    try:
        validate_chat(body)
    except InvalidRequest as exc:
        assert exc.param is not None and exc.param.startswith("messages[1]"), exc.param
        return exc.param
    return None


def message_cases() -> list[tuple[Any, str | None]]:
    """Messages built from the spec: each declared role and tool-call field, then each one broken.
    The second item is the param a refusal names (None: accepted)."""
    schemas = yaml.safe_load((ROOT / "openapi.yaml").read_text())["components"]["schemas"]
    message, tool_call = schemas["Message"], schemas["ToolCall"]
    conditional = message["if"]["properties"]["role"]["const"], message["then"]["required"]

    def with_role(role: Any) -> dict[str, Any]:
        built: dict[str, Any] = {"role": role, "content": "hi"}
        if role == conditional[0]:
            built.update({name: "call_1" for name in conditional[1]})
        return built

    cases: list[tuple[Any, str | None]] = [(with_role(r), None) for r in message["properties"]["role"]["enum"]]
    cases += [(with_role(r), "messages[1].role") for r in ("function", "bot", "User", "", 3, None, ["user"])]
    cases += [({"role": conditional[0], "content": "ok"}, f"messages[1].{conditional[1][0]}")]
    cases += [("hi", "messages[1]"), ({"content": "hi"}, "messages[1].role")]

    function_schema = tool_call["properties"]["function"]
    good_call = {
        "id": "call_1",
        "type": tool_call["properties"]["type"]["const"],
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    assert set(good_call) == set(tool_call["required"]) and set(good_call["function"]) == set(
        function_schema["required"]
    )

    def assistant(*calls: Any) -> dict[str, Any]:
        return {"role": "assistant", "content": None, "tool_calls": list(calls)}

    where = "messages[1].tool_calls[0]"
    cases += [(assistant(good_call), None), ({"role": "assistant", "content": "hi", "tool_calls": None}, None)]
    cases += [(assistant(), None), ({"role": "assistant", "tool_calls": {}}, "messages[1].tool_calls")]
    cases += [(assistant("call_1"), where)]
    for key in tool_call["required"]:
        cases.append((assistant({k: v for k, v in good_call.items() if k != key}), f"{where}.{key}"))
    cases += [(assistant({**good_call, "type": "not-" + good_call["type"]}), f"{where}.type")]
    cases += [
        (assistant({**good_call, "id": 7}), f"{where}.id"),
        (assistant({**good_call, "function": "f"}), f"{where}.function"),
    ]
    for key in function_schema["required"]:
        assert function_schema["properties"][key]["type"] == "string"
        function = good_call["function"]
        assert isinstance(function, dict)
        cases.append(
            (
                assistant({**good_call, "function": {k: v for k, v in function.items() if k != key}}),
                f"{where}.function.{key}",
            )
        )
        cases.append(
            (assistant({**good_call, "function": {**function, key: {"city": "Paris"}}}), f"{where}.function.{key}")
        )
    return cases


@pytest.mark.parametrize(("message", "param"), message_cases())
def test_the_chat_validator_and_openapi_agree_on_messages(message: Any, param: str | None) -> None:
    accepted_by_spec = message_validator().is_valid(message)
    assert accepted_by_spec == (param is None), f"openapi.yaml {'accepts' if accepted_by_spec else 'refuses'} {message}"
    assert gateway_verdict(message) == param


async def test_a_bad_role_is_a_400_naming_the_field(gateway: str) -> None:
    import httpx

    body = {
        "model": "openai/echo",
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "robot", "content": "c"},
        ],
    }
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages[2].role" and error["type"] == "invalid_request_error"
    assert "system, developer, user, assistant, tool" in error["message"]
