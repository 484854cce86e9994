"""The shipped artefacts agree with the code: openapi.yaml, the Dockerfile, the wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import yaml
from starlette.routing import Route

from gateway import Settings, create_app

ROOT = Path(__file__).parent.parent


def app_operations() -> set[tuple[str, str]]:
    app = create_app(Settings.load({"ROUTING_STRATEGY": "path"}))  # every route there is
    operations = set()
    for route in app.routes:
        assert isinstance(route, Route)
        path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
        operations |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return operations


def test_openapi_paths_and_methods_equal_the_routes() -> None:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    documented = {(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"}
    assert documented == app_operations()


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
    assert not any(n.startswith("tests/") for n in names)
