"""Who may write: the bearer token of write endpoints, and the shared secret of Label Studio webhooks.

The token is ``Settings.api_token`` when set, else a generated secret kept in ``<work_dir>/secrets/api_token``
(mode 600), so a fresh service never accepts writes from anyone who has not read that file. Tokens are compared
in constant time and never logged or echoed; a missing or wrong token gets the same short 401.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from active_learning.settings import Settings

__all__ = ["TOKEN_SECRET", "bearer", "check_bearer", "service_token"]

TOKEN_SECRET = "api_token"
"""Name of the generated token's secret file under ``<work_dir>/secrets``."""

bearer = HTTPBearer(auto_error=False, description="the service's API token (Settings.api_token)")


def service_token(settings: Settings) -> str:
    """The bearer token write endpoints require: the configured one, else the generated secret."""
    configured = settings.api_token.get_secret_value()
    return configured or settings.secret_file(TOKEN_SECRET).read_text().strip()


def check_bearer(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Refuse the request unless it carries ``Authorization: Bearer <the service token>``.

    Raises:
        HTTPException: 401 with a fixed message for a missing, malformed or wrong token.
    """
    expected: str = request.app.state.resources.token
    given = credentials.credentials if credentials is not None else ""
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
