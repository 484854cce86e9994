"""Who may use the management API: a pure ASGI middleware that checks the caller's bearer
credential with the gateway's own ``ApiKeys`` and ``OIDCVerifier``, requires the viewer role to
read and the admin role to write, and records the ``Caller`` (with its organization) in
``scope["state"]["caller"]``. Refusals are 401/403 in CoreWeave's error shape.

- An API key's role is the last field of its ``AUTH_API_KEYS`` entry (``...:admin``); a key
  without one cannot use the management API.
- A token's roles are in ``GATEWAYS_ROLES_CLAIM`` (a list, or a space- or comma-separated string;
  a dotted name reaches into nested claims, as Keycloak's ``realm_access.roles``); its organization
  in ``GATEWAYS_ORGANIZATION_CLAIM``, else ``GATEWAYS_DEFAULT_ORGANIZATION``, which API keys use too.
- With ``AUTH_ENABLED=false`` (allowed on a loopback bind only, see ``Settings``) every caller is
  an admin of the default organization.

The caller's ``Authorization`` header is removed once checked: nothing after this sees it.

    app = Access(api, keys=ApiKeys(settings.auth_api_keys), oidc=verifier, roles_claim="roles", ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from providers.errors import APIError, AuthenticationFailed

from ..auth import ApiKeys, _bearer_token
from .errors import GatewaysError, response

if TYPE_CHECKING:
    from ..oidc import OIDCVerifier

__all__ = ["Access", "Caller", "caller_of"]

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_GRANTS = {"admin": frozenset({"admin", "viewer"}), "viewer": frozenset({"viewer"})}


@dataclass(frozen=True, slots=True)
class Caller:
    subject: str
    organization_id: str
    roles: frozenset[str]


def caller_of(scope: Scope) -> Caller:
    caller: Caller = scope["state"]["caller"]
    return caller


class Access:
    """The management API behind the gateway's credentials (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        enabled: bool,
        keys: ApiKeys,
        oidc: OIDCVerifier | None,
        roles_claim: str = "roles",
        organization_claim: str = "org_id",
        default_organization: str = "default",
    ) -> None:
        self.app = app
        self.enabled = enabled
        self.keys = keys
        self.oidc = oidc
        self.roles_claim = roles_claim
        self.organization_claim = organization_claim
        self.default_organization = default_organization

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            caller = await self.authenticate(scope) if self.enabled else self._anonymous()
            needed = "viewer" if scope["method"] in _READS else "admin"
            if needed not in caller.roles:
                raise GatewaysError(
                    403,
                    f"{caller.subject} may not {'read' if needed == 'viewer' else 'change'} gateways: that needs "
                    f"the {needed} role ({self._where_roles_come_from()}).",
                )
        except GatewaysError as error:
            await response(error)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        await self.app(scope, receive, send)

    def _anonymous(self) -> Caller:
        return Caller("anonymous", self.default_organization, _GRANTS["admin"])

    def _where_roles_come_from(self) -> str:
        return f"an API key marked admin or viewer in AUTH_API_KEYS, or a token whose {self.roles_claim} claim has it"

    async def authenticate(self, scope: Scope) -> Caller:
        try:
            token = _bearer_token(scope["headers"])
            identity = self.keys.match(token) if self.keys else None
            if identity is not None:
                granted = _GRANTS.get(identity.role, frozenset())
                return Caller(f"The API key {identity.subject!r}", self.default_organization, granted)
            if self.oidc is None:
                raise AuthenticationFailed("The API key is not valid.")
            claims = await self.oidc.verify(token)
        except APIError as error:
            headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
            raise GatewaysError(error.status, error.message, {**headers, **error.headers}) from None
        subject = str(claims.get("sub") or claims.get("azp") or "unknown")
        organization = claims.get(self.organization_claim)
        if organization is not None and (not isinstance(organization, str) or not organization):
            raise GatewaysError(403, f"The token's {self.organization_claim} claim is not an organization id.")
        roles: frozenset[str] = frozenset()
        for role in _claimed_roles(claims, self.roles_claim):
            roles |= _GRANTS.get(role.lower(), frozenset())
        return Caller(f"The caller {subject!r}", organization or self.default_organization, roles)


def _claimed_roles(claims: Mapping[str, Any], name: str) -> list[str]:
    value: Any = claims
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []
