"""Settings from the environment and a YAML file: names, defaults, spellings and clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import SETTINGS, Settings, SettingsError, parse_bool, parse_duration


def test_defaults_follow_inference_gateway() -> None:
    s = Settings.load({})
    assert (s.environment, s.server_host, s.server_port) == ("production", "127.0.0.1", 8080)
    assert (s.server_read_timeout, s.server_write_timeout, s.server_idle_timeout) == (30, 30, 120)
    assert s.server_max_request_body_size == 10485760
    assert (s.client_max_idle_conns, s.client_max_idle_conns_per_host) == (20, 20)
    assert (s.client_idle_conn_timeout, s.client_response_header_timeout, s.client_timeout) == (30, 10, 30)
    assert s.enable_vision is False and s.allowed_models == () and s.disallowed_models == ()
    assert [p.id for p in s.configured_providers] == ["ollama"]  # the one provider that needs no key


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("1.5s", 1.5), ("45", 45), ("0", 0), ("2m0.5s", 120.5)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10x", "1m 30s", "-1s", "ten"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("0", False),
        ("No", False),
        ("off", False),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SERVER_PORT": "http"}, "SERVER_PORT"),
        ({"SERVER_PORT": "70000"}, "SERVER_PORT"),
        ({"SERVER_READ_TIMEOUT": "soon"}, "SERVER_READ_TIMEOUT"),
        ({"ENABLE_VISION": "maybe"}, "ENABLE_VISION"),
        ({"VISION_ENABLED": "maybe"}, "VISION_ENABLED"),
        ({"SERVER_MAX_REQUEST_BODY_SIZE": "-5"}, "SERVER_MAX_REQUEST_BODY_SIZE"),
        ({"SERVER_TLS_CERT_PATH": "/nonexistent.pem"}, "SERVER_TLS_"),
        ({"OPENAI_API_URL": "ftp://x"}, "OPENAI_API_URL"),
        ({"CLOUDFLARE_API_KEY": "k"}, "CLOUDFLARE_API_URL"),
        ({"AUTH_ENABLED": "true"}, "AUTH_ENABLED"),
    ],
)
def test_bad_values_fail_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.load(env)


def test_auth_without_an_issuer_names_what_inference_gateway_would_have_used() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.load({"AUTH_ENABLED": "true"})
    message = str(refused.value)
    assert "AUTH_OIDC_ISSUER=http://keycloak:8080/realms/inference-gateway-realm" in message
    assert "AUTH_OIDC_CLIENT_ID=inference-gateway-client" in message


@pytest.mark.parametrize(
    ("text", "trusted"),
    [
        ("", ()),
        ("10.0.0.7", ("10.0.0.7",)),
        (" 10.0.0.0/8, 192.168.1.1 ,fd00::/8", ("10.0.0.0/8", "192.168.1.1", "fd00::/8")),
        ("*", ("*",)),
    ],
)
def test_trusted_proxies(text: str, trusted: tuple[str, ...]) -> None:
    assert Settings.load({"FORWARDED_ALLOW_IPS": text}).forwarded_allow_ips == trusted


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("ingress.local", "not an IP address"),
        ("10.0.0.1/8", "host bits"),  # uvicorn would take it for a name and never match it
        ("10.0.0.0/33", "not an IP address"),
        ("*,10.0.0.1", "cannot be combined"),  # uvicorn trusts everyone only for a lone "*"
    ],
)
def test_bad_trusted_proxies_fail_naming_the_variable(text: str, says: str) -> None:
    with pytest.raises(SettingsError, match=f"FORWARDED_ALLOW_IPS.*{says}"):
        Settings.load({"FORWARDED_ALLOW_IPS": text})


def test_enable_and_enabled_spellings() -> None:
    assert Settings.load({"MCP_ENABLE": "true"}).mcp_enabled
    assert Settings.load({"MCP_ENABLED": "yes"}).mcp_enabled
    assert Settings.load({"VISION_ENABLED": "1"}).enable_vision
    with pytest.raises(SettingsError, match="AUTH_ENABLE"):
        Settings.load({"AUTH_ENABLE": "true"})


def test_provider_url_and_key() -> None:
    s = Settings.load(
        {
            "OLLAMA_CLOUD_API_KEY": "k",
            "OLLAMA_CLOUD_API_URL": "https://example.com/v1",
            "CLOUDFLARE_API_URL": "https://api.cloudflare.com/client/v4/accounts/abc/ai",
            "CLOUDFLARE_API_KEY": "c",
        }
    )
    cloud = s.providers["ollama_cloud"]
    assert cloud.configured and cloud.url == "https://example.com/v1" and cloud.api_key == "k"
    assert s.providers["cloudflare"].endpoint("/v1/chat/completions").endswith("/accounts/abc/ai/v1/chat/completions")
    assert "k" not in repr(cloud)


def test_yaml_file_with_env_winning(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "environment: development\n"
        "server:\n  port: 9000\n  read_timeout: 1m\n"
        "enable_vision: true\n"
        "allowed_models: [openai/gpt-4o, anthropic/claude]\n"
        "providers:\n  openai:\n    api_key: from-file\n  groq:\n    api_url: https://groq.example/v1\n    api_key: g\n"
    )
    s = Settings.load({"SERVER_PORT": "9100", "GATEWAY_CONFIG": str(config)})
    assert s.environment == "development" and s.debug
    assert s.server_port == 9100 and s.server_read_timeout == 60
    assert s.enable_vision and s.allowed_models == ("openai/gpt-4o", "anthropic/claude")
    assert s.providers["openai"].api_key == "from-file"
    assert s.providers["groq"].url == "https://groq.example/v1"
    assert Settings.load({"OPENAI_API_KEY": "from-env"}, config).providers["openai"].api_key == "from-env"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server:\n  hots: x\n", "server.hots"),
        ("providers:\n  nosuch:\n    api_key: x\n", "unknown provider 'nosuch'"),
        ("providers:\n  openai:\n    token: x\n", "providers.openai.token"),
        ("- a\n- b\n", "mapping"),
        ("server: [\n", "Cannot read"),
    ],
)
def test_bad_yaml_is_reported(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message.replace("[", r"\[")):
        Settings.load({}, config)


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [var.name for var in SETTINGS if f"`{var.name}`" not in readme]
    assert not missing, f"README configuration reference lacks {missing}"


def test_api_keys_from_the_environment_and_the_file(tmp_path: Path) -> None:
    digest = "ab" * 32
    from_env = Settings.load({"AUTH_API_KEYS": f"ci:{digest}:openai/gpt-4o|groq/llama, ops:{digest.upper()}"})
    assert [(k.name, k.sha256, k.models) for k in from_env.auth_api_keys] == [
        ("ci", digest, ("openai/gpt-4o", "groq/llama")),
        ("ops", digest, ()),
    ]
    assert digest not in repr(from_env.auth_api_keys)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"auth:\n  enabled: true\n  api_keys:\n    - name: ci\n      sha256: {digest}\n      models: [openai/gpt-4o]\n"
    )
    from_file = Settings.load({}, config)
    assert from_file.auth_enabled and from_file.auth_api_keys[0].models == ("openai/gpt-4o",)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AUTH_API_KEYS": "ci:not-a-hash"}, "AUTH_API_KEYS"),
        ({"AUTH_API_KEYS": f"ci:{'a' * 64},ci:{'b' * 64}"}, "unique"),
        ({"AUTH_ENABLED": "true", "AUTH_OIDC_ISSUER": "https://idp.example"}, "AUTH_OIDC_CLIENT_ID"),
        ({"AUTH_OIDC_ISSUER": "idp.example", "AUTH_OIDC_CLIENT_ID": "x"}, "AUTH_OIDC_ISSUER"),
        ({"ROUTING_STRATEGY": "query"}, "ROUTING_STRATEGY"),
        ({"ROUTING_HEADER_NAME": "X Model"}, "ROUTING_HEADER_NAME"),
        ({"ROUTING_HEADER_NAME": "X" * 101}, "ROUTING_HEADER_NAME"),
    ],
)
def test_bad_access_settings(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.load(env)


def test_the_example_config_is_valid_with_its_commented_sections_on(tmp_path: Path) -> None:
    example = (Path(__file__).parent.parent / "config" / "gateway.example.yaml").read_text()
    assert Settings.load({}, Path(__file__).parent.parent / "config" / "gateway.example.yaml")
    lines = []
    for line in example.splitlines():
        if line.startswith("# ") and line[2:3] != " " and ":" in line[2:].split(" ", 1)[0]:
            lines.append(line[2:])  # a commented setting's first line
        elif line.startswith("#   "):
            lines.append(line[2:])
        elif not line.startswith("#"):
            lines.append(line)
    enabled = tmp_path / "all.yaml"
    enabled.write_text("\n".join(lines).replace("<from `polyrelay new-key ci-bot`>", "a" * 64))
    settings = Settings.load({}, enabled)
    assert settings.auth_enabled and settings.mcp_enabled and settings.routing_strategy == "header"
    assert settings.auth_api_keys[0].models == ("openai/gpt-4o-mini",)
    assert settings.mcp_server_headers == {"weather": {"Authorization": "Bearer server-token"}}
