"""OIDC bearer tokens, verified with joserfc against the issuer's published keys.

Discovery (``{issuer}/.well-known/openid-configuration``) names the JWKS; both are fetched in the
background at start-up and retried until they answer, so a slow identity provider delays
authentication (503 meanwhile) instead of crash-looping the gateway. Then one sleeping task fetches
the JWKS again every ``refresh_interval``, so a key the issuer withdraws stops verifying within that
interval (a failed refresh keeps the keys already known). A token signed with a key the cached JWKS
lacks triggers one refetch, at most once per ``refresh_interval``, shared by every request that
needs it. Discovery and JWKS bodies over ``MAX_DOCUMENT_BYTES`` are refused, never buffered.

Only access tokens are accepted: the JOSE header's ``typ``, when present, must be ``JWT`` or RFC
9068's ``at+jwt``; an ID token (Keycloak's claim ``typ: "ID"``, or ``at_hash``/``c_hash``/``nonce``
claims) is refused.

    verifier = OIDCVerifier("https://idp.example/realms/x", "polyrelay", http)
    await verifier.start()
    claims = await verifier.verify(token)     # or AuthenticationFailed / ServiceUnavailable
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from providers import HttpClient, Timeouts
from providers.errors import AuthenticationFailed, ServiceUnavailable

from .auth import MAX_TOKEN_BYTES
from .errors import describe

__all__ = ["ALGORITHMS", "MAX_DOCUMENT_BYTES", "MAX_TOKEN_BYTES", "OIDCVerifier"]

log = logging.getLogger("polyrelay")

# Asymmetric signatures only: never "none", never HMAC (which a public key could be abused to forge).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_KEY_TYPES = {"R": "RSA", "P": "RSA", "E": "EC"}
# A discovery document is a few KiB and a JWKS holds a handful of keys: anything near this is hostile.
MAX_DOCUMENT_BYTES = 1024 * 1024
# The JOSE header "typ" values of an access token (RFC 9068 section 2.1; "JWT" is what most issuers,
# Keycloak included, write). Others (id+jwt, logout+jwt, secevent+jwt, dpop+jwt...) are other tokens.
_ACCESS_TOKEN_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
# Keycloak's "typ" claim: "Bearer" on access tokens; these name its other tokens.
_OTHER_KEYCLOAK_TYPES = frozenset({"id", "refresh", "offline", "logout", "serialized-id"})


class OIDCVerifier:
    """Verifies bearer tokens of one issuer for one audience; ``start`` launches the background
    discovery and JWKS refresh, ``close`` stops them."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        http: HttpClient,
        *,
        leeway: int = 30,
        refresh_interval: float = 60.0,
        retry_interval: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.http = http
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self.timeouts = Timeouts(connect=timeout, total=timeout)
        self.claims = JWTClaimsRegistry(
            leeway=leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )
        self.keys: KeySet | None = None
        self.jwks_uri: str | None = None
        self._fetched_at = 0.0
        self._fetching: asyncio.Task[None] | None = None
        self._background: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.keys is not None

    async def start(self) -> None:
        self._background = asyncio.create_task(self._run())

    async def close(self) -> None:
        for task in (self._background, self._fetching):
            if task is not None:
                task.cancel()

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, if it is a valid access token of this issuer for this audience."""
        keys = self.keys
        if keys is None:
            raise ServiceUnavailable(
                "The gateway cannot check tokens yet: its identity provider has not answered. Retry shortly.",
                headers={"Retry-After": str(int(self.retry_interval) or 1)},
            )
        if len(token) > MAX_TOKEN_BYTES:
            raise _invalid("it is larger than 8 KiB")
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise _invalid("it is not a signed JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise _invalid(f"its algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not _has_kid(keys, kid):
            await self._refetch()
            keys = self.keys or keys
            if not _has_kid(keys, kid):
                raise _invalid("it is signed with a key the issuer does not publish")
        try:
            decoded = jwt.decode(token, keys if kid is not None else _only_key(keys, alg), algorithms=list(ALGORITHMS))
            self.claims.validate(decoded.claims)
        except JoseError as exc:
            raise _invalid(_reason(exc)) from None
        _check_access_token(decoded.header, decoded.claims)  # after the signature: the header is the issuer's
        return decoded.claims

    async def _run(self) -> None:
        await self._discover_until_done()
        if self.refresh_interval <= 0:
            return  # 0: refetch on every unknown kid, and never on a schedule
        while True:
            # An unknown-kid refetch in between counts as a refresh: sleep what is left of the interval.
            wait = self._fetched_at + self.refresh_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            with contextlib.suppress(Exception):  # logged once by _fetch_done; the known keys stay
                await self._shared_fetch()

    async def _discover_until_done(self) -> None:
        delay = self.retry_interval
        while self.keys is None:
            try:
                document = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
                if str(document.get("issuer", "")).rstrip("/") != self.issuer:
                    raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}")
                self.jwks_uri = str(document["jwks_uri"])
                await self._fetch_keys()
                log.info(
                    "OIDC: %d signing key(s) loaded from %s", len(self.keys.keys) if self.keys else 0, self.jwks_uri
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: say what, and try again
                log.error(
                    "OIDC discovery at %s failed (%s); requests needing a token get 503 until it answers. "
                    "Retrying in %gs.",
                    self.issuer,
                    describe(exc),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def _refetch(self) -> None:
        """Fetch the JWKS again, unless it was fetched within the interval; callers share one fetch."""
        if self._fetching is None and time.monotonic() - self._fetched_at < self.refresh_interval:
            return
        with contextlib.suppress(Exception):  # logged once by _fetch_done, however many requests waited
            await self._shared_fetch()

    async def _shared_fetch(self) -> None:
        """One JWKS fetch at a time, whoever asks (the refresh task or requests with unknown kids)."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch_keys())
            self._fetching.add_done_callback(self._fetch_done)
        await asyncio.shield(self._fetching)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        self._fetching = None
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here so an unawaited failure is not reported as lost
        if exc is not None:
            log.warning(
                "OIDC: fetching the JWKS from %s failed (%s); keeping the keys already known, retrying within %gs.",
                self.jwks_uri,
                describe(exc),
                self.refresh_interval,
            )

    async def _fetch_keys(self) -> None:
        assert self.jwks_uri is not None
        self._fetched_at = time.monotonic()
        document = await self._get_json(self.jwks_uri)
        self.keys = KeySet.import_key_set(document)  # type: ignore[arg-type]

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self.http.request("GET", url, headers={"Accept": "application/json"}, timeouts=self.timeouts)
        try:
            if response.status != 200:
                raise ValueError(f"{url} answered HTTP {response.status}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"{url} announced {int(declared)} bytes, over the {_LIMIT} limit")
            chunks, size = [], 0
            async for chunk in response.iter_chunks():  # counted as it arrives: never more than the cap held
                size += len(chunk)
                if size > MAX_DOCUMENT_BYTES:
                    raise ValueError(f"{url} sent more than the {_LIMIT} limit")
                chunks.append(chunk)
        finally:
            response.close()
        document = orjson.loads(b"".join(chunks))
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return document


_LIMIT = f"{MAX_DOCUMENT_BYTES / 2**20:g} MiB"


def _check_access_token(header: dict[str, Any], claims: dict[str, Any]) -> None:
    """Refuse a verified token that is not an access token: an ID token, a logout token..."""
    typ = header.get("typ")
    if typ is not None and str(typ).lower() not in _ACCESS_TOKEN_TYPES:
        raise _invalid(f"its header type {typ!r} says it is not an access token (expected at+jwt or JWT)")
    kind = claims.get("typ")
    if isinstance(kind, str) and kind.lower() in _OTHER_KEYCLOAK_TYPES:
        raise _invalid(f"it is a {kind!r} token, not an access token; send the access token")
    for claim in ("at_hash", "c_hash"):
        if claim in claims:
            raise _invalid(f"it carries {claim!r}, so it is an ID token; send the access token")
    # Keycloak before 25 also put the nonce in access tokens, which it marks with typ "Bearer".
    if "nonce" in claims and not (isinstance(kind, str) and kind.lower() == "bearer"):
        raise _invalid("it carries 'nonce', so it is an ID token; send the access token")


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _only_key(keys: KeySet, alg: str) -> Any:
    """For a token without ``kid``: the issuer's one key of the algorithm's type. With several,
    the token is ambiguous and refused rather than tried against each."""
    kty = "OKP" if alg == "EdDSA" else _KEY_TYPES.get(alg[0], "")
    matching = [key for key in keys.keys if key.key_type == kty]
    if len(matching) != 1:
        raise _invalid("it names no key (kid) and the issuer publishes several")
    return matching[0]


def _invalid(reason: str) -> AuthenticationFailed:
    return AuthenticationFailed(
        f"The bearer token is not valid: {reason}.",
        code="invalid_token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _reason(exc: JoseError) -> str:
    name = type(exc).__name__
    if name == "ExpiredTokenError":
        return "it has expired"
    if name == "InvalidTokenError" and "nbf" in str(exc):
        return "it is not valid yet"
    if name == "BadSignatureError":
        return "its signature does not verify"
    if name in ("MissingClaimError", "InvalidClaimError"):
        return f"claim check failed ({exc.description})"
    return exc.description or name
