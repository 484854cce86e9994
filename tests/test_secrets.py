"""A provider's key never reaches a client: every byte relayed from a provider is redacted.

The fakes quote the credential they received (the ``leak`` scenarios); whatever route the answer
takes, the client gets the quote with the key masked by as many ``*``, and never the key's bytes,
nor do the gateway's logs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.redact import MIN_SECRET_LENGTH, Redactor

from .fakes import FakeProviders, fake_key

PROVIDERS = ["openai", "anthropic", "google", "cohere"]  # OpenAI-compatible, then each translating adapter
BEARER = {"openai", "cohere"}  # the others take the bare key in x-api-key / x-goog-api-key


def stars(pid: str) -> str:
    return "*" * len(fake_key(pid))


def masked(pid: str) -> str:
    """What the client gets of the credential header's value, as the provider quotes it back."""
    return f"Bearer {stars(pid)}" if pid in BEARER else stars(pid)


@pytest.fixture
def secrets(fake: FakeProviders) -> list[bytes]:
    return [v.encode() for k, v in fake.env().items() if k.endswith("_API_KEY")]


@pytest.fixture(autouse=True)
def no_key_in_logs(caplog: pytest.LogCaptureFixture, secrets: list[bytes]) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for secret in secrets:
        assert secret.decode() not in caplog.text


def everything(response: httpx.Response) -> bytes:
    """All the client got: status line, headers and (de-chunked) body."""
    head = f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n".encode()
    return head + b"".join(k + b": " + v + b"\r\n" for k, v in response.headers.raw) + b"\r\n" + response.content


def assert_no_key(response: httpx.Response, secrets: list[bytes]) -> None:
    received = everything(response)
    for secret in secrets:
        assert secret not in received, f"{secret!r} reached the client"


async def chat(gateway: str, model: str, *, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with httpx.AsyncClient() as http:
        return await http.post(f"{gateway}/v1/chat/completions", json=body)


def events(response: httpx.Response) -> list[dict[str, object]]:
    lines = response.content.split(b"\n\n")
    return [orjson.loads(e.removeprefix(b"data: ")) for e in lines if e.startswith(b"data: {")]


def streamed_text(response: httpx.Response) -> str:
    return "".join(
        str(c["delta"].get("content") or "")  # type: ignore[index, union-attr]
        for e in events(response)
        for c in e.get("choices", [])  # type: ignore[union-attr]
    )


# -- /v1/chat/completions --------------------------------------------------------------------------


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_a_chat_answer_is_masked(gateway: str, secrets: list[bytes], pid: str) -> None:
    response = await chat(gateway, f"{pid}/leak")
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == f"Your key is {masked(pid)}"
    assert_no_key(response, secrets)


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_a_stream_and_split_across_reads_is_masked(
    gateway: str, secrets: list[bytes], pid: str
) -> None:
    response = await chat(gateway, f"{pid}/leak", stream=True)
    assert response.status_code == 200 and response.content.endswith(b"data: [DONE]\n\n")
    assert streamed_text(response) == f"Your key is {masked(pid)}"
    assert_no_key(response, secrets)


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_an_in_stream_error_is_masked(
    gateway: str, secrets: list[bytes], caplog: pytest.LogCaptureFixture, pid: str
) -> None:
    response = await chat(gateway, f"{pid}/leak-error", stream=True)
    assert response.status_code == 200
    errors = [e["error"] for e in events(response) if "error" in e]
    assert len(errors) == 1 and stars(pid) in str(errors[0]["message"])  # type: ignore[index]
    assert_no_key(response, secrets)
    if pid != "openai":  # translated errors are logged (the OpenAI-compatible one is relayed as it is)
        assert stars(pid) in caplog.text


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_an_error_answer_and_its_headers_is_masked(
    gateway: str, secrets: list[bytes], pid: str
) -> None:
    response = await chat(gateway, f"{pid}/leak-error")
    assert response.status_code == 429
    assert masked(pid) in response.json()["error"]["message"]
    assert response.headers["retry-after"] == masked(pid)
    assert_no_key(response, secrets)


# -- /proxy ----------------------------------------------------------------------------------------


def proxy_base(fake: FakeProviders, pid: str) -> str:
    return f"/proxy/{pid}" + urlsplit(fake.url_for(fake.registry[pid])).path


@pytest.mark.parametrize("status", [200, 401, 500])
@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_a_proxied_answer_is_masked(
    gateway: str, fake: FakeProviders, secrets: list[bytes], pid: str, status: int
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{proxy_base(fake, pid)}/leak/{status}")
    assert response.status_code == status
    assert response.json() == {"error": {"message": f"you sent {masked(pid)}"}}
    assert response.headers["x-seen-key"] == masked(pid)
    assert int(response.headers["content-length"]) == len(response.content)  # masks keep the length
    assert_no_key(response, secrets)


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_split_across_reads_of_a_proxied_stream_is_masked(
    gateway: str, fake: FakeProviders, secrets: list[bytes], pid: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{proxy_base(fake, pid)}/leak-stream")
    assert response.content == f"data: you sent {masked(pid)}\n\n".encode()
    assert_no_key(response, secrets)


async def test_headers_a_proxied_provider_echoes_are_masked(
    gateway: str, fake: FakeProviders, secrets: list[bytes]
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{proxy_base(fake, 'openai')}/echo")
    assert response.json()["headers"]["authorization"] == masked("openai")
    assert fake.last("/openai/v1/echo").headers["authorization"] == "Bearer key-openai"  # it was sent
    assert_no_key(response, secrets)


# -- /v1/models ------------------------------------------------------------------------------------


async def test_a_key_quoted_in_a_model_list_is_masked(gateway: str, fake: FakeProviders, secrets: list[bytes]) -> None:
    fake.quote_keys = True
    try:
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{gateway}/v1/models")
    finally:
        fake.quote_keys = False
    ids = {m["id"] for m in response.json()["data"]}
    for pid in PROVIDERS:
        assert f"{pid}/model-{stars(pid)}" in ids
    assert_no_key(response, secrets)


# -- the Redactor ----------------------------------------------------------------------------------


def test_every_occurrence_is_masked_with_as_many_stars() -> None:
    redactor = Redactor(["sk-secret-1", "other-secret"])
    data = b'{"a": "sk-secret-1", "b": "x sk-secret-1 other-secret"}'
    assert redactor.whole(data) == b'{"a": "***********", "b": "x *********** ************"}'
    assert redactor.whole(b"nothing here") == b"nothing here"


def test_a_secret_inside_another_is_masked_whole() -> None:
    redactor = Redactor(["abcdefgh", "xxabcdefghxx"])
    assert redactor.whole(b"1 xxabcdefghxx 2 abcdefgh") == b"1 ************ 2 ********"


def test_no_secrets_means_no_redactor_and_placeholders_are_not_secrets() -> None:
    assert Redactor.of([]) is None
    assert Redactor.of(["none", "x" * (MIN_SECRET_LENGTH - 1)]) is None
    assert Redactor.of(["x" * MIN_SECRET_LENGTH]) is not None


def test_ordinary_chunks_are_not_delayed() -> None:
    stream = Redactor(["sk-secret-1"]).stream()
    event = b'data: {"choices": [{"delta": {"content": "sks"}}]}\n\n'
    assert stream.feed(event) == event
    assert stream.feed(b"ends with sk-") == b"ends with "  # may begin the key: held back
    assert stream.feed(b"not it") == b"sk-not it"
    assert stream.feed(b"sk-secret-") == b""
    assert stream.flush() == b"sk-secret-"  # the body ended before the key did


def covered(data: bytes, secrets: list[bytes]) -> set[int]:
    """Positions that belong to some occurrence of some secret."""
    positions: set[int] = set()
    for secret in secrets:
        at = data.find(secret)
        while at != -1:
            positions.update(range(at, at + len(secret)))
            at = data.find(secret, at + 1)
    return positions


ALPHABET = b"abk-\n"  # few letters, so secrets overlap, repeat and nearly match
secret_strategy = st.binary(min_size=MIN_SECRET_LENGTH, max_size=14).map(
    lambda b: bytes(ALPHABET[x % len(ALPHABET)] for x in b)
)


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(secret_strategy, min_size=1, max_size=3),
    pieces=st.lists(st.one_of(st.binary(max_size=12), st.integers(0, 2)), max_size=12),
    data=st.data(),
)
def test_a_stream_split_anywhere_never_lets_a_secret_through(
    secrets: list[bytes], pieces: list[bytes | int], data: st.DataObject
) -> None:
    body = b"".join(secrets[p % len(secrets)] if isinstance(p, int) else p for p in pieces)
    redactor = Redactor(secrets)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(body)))))
    mask = covered(body, secrets)
    for chunks in (
        [body],
        [body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)], strict=True)],
        [bytes([b]) for b in body],
    ):
        stream = redactor.stream()
        out = b"".join(stream.feed(c) for c in chunks) + stream.flush()
        assert len(out) == len(body)
        assert not any(secret in out for secret in secrets)
        assert all(out[i] == body[i] for i in range(len(body)) if i not in mask)  # other bytes unchanged
        if len(secrets) == 1:  # (where different secrets overlap, pieces may mask them otherwise, never less)
            assert out == redactor.whole(body)
