"""CLIENT_TLS_MIN_VERSION: a real HTTPS upstream on loopback (a certificate made for the test)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import Settings
from gateway.settings import SettingsError

from .conftest import GatewayFactory
from .test_retries import ANSWER


def certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@asynccontextmanager
async def https_upstream(cert: Path, key: Path, most: ssl.TLSVersion) -> AsyncIterator[str]:
    """An OpenAI-compatible chat upstream over HTTPS that speaks TLS up to ``most``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.maximum_version = most

    async def chat(request: web.Request) -> web.Response:
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


BODY = {"model": "openai/m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(("most", "status"), [(ssl.TLSVersion.TLSv1_2, 502), (ssl.TLSVersion.TLSv1_3, 200)])
async def test_tls13_refuses_a_provider_that_offers_less(
    gateway_with: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, most: ssl.TLSVersion, status: int
) -> None:
    cert, key = certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the gateway's TLS 1.3 context trusts the test's certificate
    async with (
        https_upstream(cert, key, most) as upstream,
        gateway_with(OPENAI_API_URL=upstream, CLIENT_TLS_MIN_VERSION="TLS13") as url,
        httpx.AsyncClient() as http,
    ):
        response = await http.post(f"{url}/v1/chat/completions", json=BODY)
    assert response.status_code == status, response.text
    if status == 502:
        assert response.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    ("given", "read"), [("TLS12", "TLS12"), ("tls11", "TLS12"), ("TLS10", "TLS12"), ("TLS13", "TLS13")]
)
def test_inference_gateways_values_are_read_as_it_reads_them(given: str, read: str) -> None:
    assert Settings.load({"CLIENT_TLS_MIN_VERSION": given}).client_tls_min_version == read


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(SettingsError, match="CLIENT_TLS_MIN_VERSION"):
        Settings.load({"CLIENT_TLS_MIN_VERSION": "SSL3"})
