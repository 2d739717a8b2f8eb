"""Exceptions raised by the labeling package.

::

    LabelingError                    anything that went wrong talking to or about Label Studio
    ├── ServerError                  the local server could not be installed, started, reached or stopped
    │   └── PortBusyError            the pinned port is held by another process
    ├── LabelStudioAPIError          the API answered with an error (status and a short reason kept)
    │   └── AuthenticationError      the token was refused (401/403)
    ├── ConfigError                  a labeling config or task payload is invalid
    ├── ConversionError              a Label Studio result cannot be turned into per-date states
    └── WebhookError                 a webhook request is unauthenticated or malformed
        ├── WebhookAuthError         the shared-secret header is missing or wrong
        └── WebhookPayloadError      the body is not a webhook we understand

Messages say what was wrong, the value seen and the fix. They never contain tokens, passwords or request
bodies.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "ConversionError",
    "LabelStudioAPIError",
    "LabelingError",
    "PortBusyError",
    "ServerError",
    "WebhookAuthError",
    "WebhookError",
    "WebhookPayloadError",
]


class LabelingError(Exception):
    """Base class of every error raised by ``labeling``."""


class ServerError(LabelingError):
    """The local Label Studio server could not be installed, started, reached or stopped."""


class PortBusyError(ServerError):
    """The pinned port is taken by a process that is not our Label Studio server."""


class LabelStudioAPIError(LabelingError):
    """The Label Studio API answered with an error.

    Attributes:
        status: HTTP status code (0 when the server could not be reached at all).
        method: HTTP method of the failed call.
        path: API path of the failed call (no query string, no secrets).
    """

    def __init__(self, message: str, *, status: int = 0, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path


class AuthenticationError(LabelStudioAPIError):
    """Label Studio refused the API token."""


class ConfigError(LabelingError):
    """A labeling config, project setting or task payload is invalid."""


class ConversionError(LabelingError):
    """A Label Studio annotation cannot be converted to per-date states."""


class WebhookError(LabelingError):
    """A webhook request could not be accepted."""


class WebhookAuthError(WebhookError):
    """The webhook's shared-secret header is missing or wrong."""


class WebhookPayloadError(WebhookError):
    """The webhook body is not valid JSON or not a webhook we understand."""
