"""Wiring of :class:`active_learning.settings.Settings` into the labeling package: server, client and secrets.

``labeling`` takes paths, URLs and secrets as parameters; this module is the one place that derives them from
Settings. Generated secrets live in files under the work dir (``Settings.secret_file``) and are never logged.
"""

from __future__ import annotations

from urllib.parse import urlparse

from active_learning.settings import Settings
from labeling import LabelStudioClient, LabelStudioServer, ServerConfig, legacy_token_from_secret

__all__ = ["api_token", "label_studio_client", "label_studio_server", "pseudonym_secret", "webhook_secret"]


def _secret(settings: Settings, name: str) -> str:
    return settings.secret_file(name).read_text().strip()


def api_token(settings: Settings) -> str:
    """The Label Studio API token: the configured one, else one derived from a generated secret."""
    return settings.label_studio_token.get_secret_value() or legacy_token_from_secret(
        _secret(settings, "label_studio_token")
    )


def admin_password(settings: Settings) -> str:
    """The Label Studio admin password: the configured one, else a generated secret."""
    return settings.label_studio_admin_password.get_secret_value() or _secret(
        settings, "label_studio_admin_password"
    )


def webhook_secret(settings: Settings) -> str:
    """Shared secret Label Studio sends in the webhook header."""
    return settings.webhook_secret.get_secret_value() or _secret(settings, "webhook_secret")


def pseudonym_secret(settings: Settings) -> bytes:
    """Key of the volunteer pseudonyms (HMAC of the Label Studio user id)."""
    return _secret(settings, "volunteer_pseudonym").encode()


def label_studio_server(settings: Settings) -> LabelStudioServer:
    """The local server described by the settings (host and port from ``label_studio_url``)."""
    url = urlparse(settings.label_studio_url)
    return LabelStudioServer(
        ServerConfig(
            root=settings.work_dir / "labelstudio",
            admin_email=settings.label_studio_admin_email,
            admin_password=admin_password(settings),
            api_token=api_token(settings),
            host=url.hostname or "127.0.0.1",
            port=url.port or 8089,
            version=settings.label_studio_version,
        )
    )


def label_studio_client(settings: Settings) -> LabelStudioClient:
    """An API client for the configured server."""
    return LabelStudioClient(settings.label_studio_url, api_token(settings))
