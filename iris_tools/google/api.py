"""A Google REST API as the gcloud configuration in use reaches it: its endpoint (an
`api_endpoint_overrides/<api>` property, or Google's), its proxy (`proxy/*`), and a bearer token from
gcloud that is renewed before it expires (an access token lives an hour; a rollout with holds can
outlive one). Locally the endpoint is the local Cloud Run, through the same proxy gcloud uses, and no
token is sent (auth is disabled there).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from iris_tools.environment import value
from iris_tools.google.gcloud import Gcloud

TOKEN_RENEW_S = 30 * 60  # renewed well inside an access token's hour


class ApiError(Exception):
    """An answer other than 2xx, or none: `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def opener_for(gcloud: Gcloud) -> urllib.request.OpenerDirector:
    if gcloud.property("proxy/type") == "http" and gcloud.property("proxy/address"):
        proxy = f"http://{gcloud.property('proxy/address')}:{gcloud.property('proxy/port')}"
        return urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(urllib.request.ProxyHandler())


class GoogleApi:
    def __init__(self, endpoint: str, opener: urllib.request.OpenerDirector | None = None,
                 token: Callable[[], str | None] = lambda: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint.rstrip("/") + "/"
        self.opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token_source = token
        self._token: str | None = None
        self._token_at = float("-inf")
        self._clock = clock
        self.timeout_s: float = value("API_TIMEOUT_S")  # an API that does not answer in this long has failed

    @classmethod
    def of(cls, gcloud: Gcloud, api: str, default_endpoint: str) -> "GoogleApi":
        """Google API `api` (run, monitoring, logging) as the configuration in use reaches it: its endpoint
        override (`api_endpoint_overrides/<api>`) or `default_endpoint`, its proxy, and its credentials."""
        endpoint = gcloud.property(f"api_endpoint_overrides/{api}") or default_endpoint
        return cls(endpoint, opener_for(gcloud), gcloud.access_token)

    def token(self) -> str | None:
        """The bearer token, asked of gcloud again once it is TOKEN_RENEW_S old."""
        if self._clock() - self._token_at >= TOKEN_RENEW_S:
            self._token = self._token_source()
            self._token_at = self._clock()
        return self._token

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path.lstrip("/"), data=data, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                message = json.loads(text)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = text[:300] or exc.reason
            raise ApiError(exc.code, f"{method} {path}: HTTP {exc.code}: {message}") from None
        except (OSError, ValueError) as exc:  # refused, timed out, cut off, not JSON
            raise ApiError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
