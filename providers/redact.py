"""Masking a provider's credentials in every byte the gateway relays from that provider.

Providers quote the key they received (an error saying "invalid key sk-...", an echoing model, a
debug header), so each answer passes through its provider's ``Redactor`` in ``transport`` before
anything else reads it. A mask is a run of ``*`` as long as the secret: lengths, and so a relayed
``Content-Length``, stay right.

>>> redactor = Redactor(["sk-secret-1"])
>>> redactor.whole(b'{"error": "bad key sk-secret-1"}')
b'{"error": "bad key ***********"}'
>>> stream = redactor.stream()  # one per body read in chunks
>>> stream.feed(b"bad key sk-se"), stream.feed(b"cret-1 ok"), stream.flush()
(b'bad key ', b'*********** ok', b'')

A stream holds back only the longest tail of a chunk that could begin a secret, so ordinary chunks
pass at once. Bytes are matched as the provider sent them: a key written with JSON escapes, or
spelled out across separate stream events, is not recognised.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MIN_SECRET_LENGTH", "Redactor", "StreamRedactor"]

# Shorter values are placeholders ("none", "ollama"), not keys; masking them would garble ordinary text.
MIN_SECRET_LENGTH = 8


class Redactor:
    """The secrets of one provider, longest first (so a secret inside another is masked whole)."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str | bytes]) -> None:
        values = {s.encode() if isinstance(s, str) else s for s in secrets}
        ordered = sorted((s for s in values if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        # (secret, its mask, its first byte, the bytes a held-back tail can end with): a tail starts
        # with the first byte; a chunk ending in none of the others (``}``, ``\n``) holds nothing back.
        self._secrets = tuple((s, b"*" * len(s), s[:1], frozenset(s[:-1])) for s in ordered)

    @classmethod
    def of(cls, secrets: Iterable[str | bytes]) -> Redactor | None:
        """A redactor, or ``None`` when there is nothing to mask (callers then do no work at all)."""
        redactor = cls(secrets)
        return redactor if redactor._secrets else None

    def whole(self, data: bytes) -> bytes:
        """``data`` with every secret masked (a body read whole, a header)."""
        for secret, mask, _, _ in self._secrets:
            if secret in data:
                data = data.replace(secret, mask)
        return data

    def found(self, data: bytes) -> bool:
        """Whether any secret is in ``data``."""
        return any(secret in data for secret, _, _, _ in self._secrets)

    def text(self, text: str) -> str:
        """``text`` with every secret masked: a message decoded from an answer, where a key the
        provider wrote with JSON escapes has become plain again."""
        for secret, _, _, _ in self._secrets:
            plain = secret.decode("utf-8", "surrogateescape")
            if plain in text:
                text = text.replace(plain, "*" * len(plain))
        return text

    def stream(self) -> StreamRedactor:
        """An incremental redactor for one body read in chunks."""
        return StreamRedactor(self)

    def partial_tail(self, data: bytes) -> int:
        """The length of the longest tail of ``data`` that is a proper prefix of a secret."""
        if not data:
            return 0
        size, last, longest = len(data), data[-1], 0
        for secret, _, first, inner in self._secrets:
            if last not in inner:
                continue
            at = data.find(first, max(0, size - len(secret) + 1))
            while at != -1 and size - at > longest:
                if secret[size - at - 1] == last and secret.startswith(data[at:]):
                    longest = size - at
                    break
                at = data.find(first, at + 1)
        return longest


class StreamRedactor:
    """``feed`` each chunk and relay what it returns; ``flush`` at the end of the body.

    A secret split across chunks is caught because the tail that might begin one is carried into
    the next chunk instead of being returned.
    """

    __slots__ = ("_held", "_redactor")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._held = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._redactor.whole(self._held + chunk if self._held else chunk)
        held = self._redactor.partial_tail(data)
        if held:
            self._held = data[-held:]
            return data[:-held]
        self._held = b""
        return data

    def flush(self) -> bytes:
        """What was held back: never a whole secret, since the body ended before it did."""
        held, self._held = self._held, b""
        return held
