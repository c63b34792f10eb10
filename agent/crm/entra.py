"""Client-credential sign-in at Microsoft Entra ID with msal, for Graph and Dataverse.

msal is synchronous (it uses requests), so token requests run in a worker thread. Its
token cache is stored in the data folder (mode 0600), so a restarted agent reuses a
valid token instead of signing in again. Instance discovery is off, so msal reads the
authority's OpenID configuration at
`{authority_url}/{tenant}/v2.0/.well-known/openid-configuration` and contacts no other
host. Tests therefore point `authority_url` at a local server.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msal
import requests

from agent.crm import errors
from agent.crm.http import Vendor
from agent.crm.tokenfile import read_secret, write_secret
from agent.lookup.connector import ConnectorError
from agent.lookup.settings import MicrosoftSettings

log = logging.getLogger("ringboard.crm.entra")

# A token this close to its expiry is renewed before use, so it cannot expire in flight.
EXPIRY_MARGIN = 60.0

# msal's HTTP timeout for the OpenID configuration and token requests, in seconds.
SIGN_IN_TIMEOUT = 10.0

# Entra ID error codes (RFC 6749 section 5.2) that mean the app's credentials are wrong.
CREDENTIAL_ERRORS = ("invalid_client", "unauthorized_client", "invalid_grant")


class EntraAuth:
    """Bearer tokens for one app registration and one scope, cached in memory and on disk."""

    def __init__(self, settings: MicrosoftSettings, scope: str, vendor: Vendor, cache_path: Path) -> None:
        self.settings = settings
        self.scope = scope
        self.vendor = vendor
        self.cache_path = cache_path
        self._cache = msal.SerializableTokenCache()
        stored = read_secret(cache_path)
        if stored:
            try:
                self._cache.deserialize(stored)
            except ValueError:
                log.warning("connector %s: token cache %s cannot be read; signing in again", vendor.name, cache_path)
        self._app: msal.ConfidentialClientApplication | None = None
        self._session: requests.Session | None = None
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    async def headers(self) -> dict[str, str]:
        """Return the Authorization header with a valid token."""
        return {"Authorization": f"Bearer {await self.token()}"}

    async def token(self) -> str:
        """Return a valid access token, from memory, the token cache or a new sign-in."""
        async with self._lock:
            if self._token is not None and self._token[1] - EXPIRY_MARGIN > time.time():
                return self._token[0]
            result = await asyncio.to_thread(self._acquire)
            token = result.get("access_token")
            if not isinstance(token, str):
                raise self._sign_in_error(result)
            expires_in = float(result.get("expires_in") or 0)
            self._token = (token, time.time() + expires_in)
            self._save()
            return token

    async def invalidate(self, rejected: Mapping[str, str]) -> bool:
        """Drop the rejected token (memory and cache), so the next request signs in again.

        Requests sent at once may all be rejected; only the first drops the token, and
        the others use the one it gets.
        """
        async with self._lock:
            if self._token is not None and rejected.get("Authorization") != f"Bearer {self._token[0]}":
                return True
            self._token = None
            for item in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                self._cache.remove_at(item)
            self._save()
        return True

    # Steps -------------------------------------------------------------------------

    def _acquire(self) -> dict[str, Any]:
        """Ask msal for a token (from its cache when still valid); runs in a worker thread."""
        try:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self.settings.client_id,
                    client_credential=self.settings.client_secret.secret.value,
                    authority=f"{self.settings.authority_url}/{self.settings.tenant}",
                    token_cache=self._cache,
                    instance_discovery=False,
                    http_client=self._new_session(),
                )
            return self._app.acquire_token_for_client(scopes=[self.scope])
        except requests.Timeout as error:
            raise self._error(errors.TIMEOUT, f"sign-in: {error}", seconds=SIGN_IN_TIMEOUT) from error
        except requests.RequestException as error:
            host = self.settings.authority_url.split("//", 1)[-1].split("/", 1)[0]
            raise self._error(errors.UNREACHABLE, f"sign-in: {error}", host=host) from error
        except ValueError as error:
            # msal raises ValueError when the OpenID configuration cannot be read.
            raise self._error(errors.INVALID_RESPONSE, f"sign-in: {error}") from error

    def close(self) -> None:
        """Close msal's HTTP connections."""
        if self._session is not None:
            self._session.close()

    def _new_session(self) -> requests.Session:
        self._session = _session(self.settings.ca_file)
        return self._session

    def _save(self) -> None:
        if self._cache.has_state_changed:
            write_secret(self.cache_path, self._cache.serialize())
            self._cache.has_state_changed = False

    def _sign_in_error(self, result: dict[str, Any]) -> ConnectorError:
        code = str(result.get("error") or "")
        message = errors.short_message(result.get("error_description"))
        detail = f"sign-in failed: {code}" + (f": {message}" if message else "")
        if code in CREDENTIAL_ERRORS:
            return self._error(errors.AUTH_FAILED, detail, source=self.vendor.source, renew=self.vendor.renew)
        return self._error(errors.REJECTED, detail, status=None, message=message)

    def _error(self, code: str, detail: str, **params: Any) -> ConnectorError:
        return errors.crm_error(code, detail, label=self.vendor.label, crm=self.vendor.crm, **params)


def _session(ca_file: str | None) -> requests.Session:
    """Return msal's HTTP session, with the timeout and the CA file on every request.

    requests replaces a session-wide `verify` with REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
    when either is set, so the CA file is passed per request, where it takes precedence.
    """
    session = requests.Session()
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, timeout=SIGN_IN_TIMEOUT, verify=ca_file or True
    )
    return session
