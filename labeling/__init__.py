"""Label Studio: local server lifecycle, labeling config, task push, annotation pull, webhooks, conversion."""

from labeling.client import (
    LabelStudioClient,
    ProjectSettings,
    PullResult,
    PushResult,
    SyncState,
    signup_volunteer,
)
from labeling.config import STATES, InstructionExample, instructions_html, labeling_config
from labeling.convert import PulledAnnotation, TaskSpec, chip_url, convert_annotation, volunteer_id
from labeling.errors import (
    AuthenticationError,
    ConfigError,
    ConversionError,
    LabelingError,
    LabelStudioAPIError,
    PortBusyError,
    ServerError,
    WebhookAuthError,
    WebhookError,
    WebhookPayloadError,
)
from labeling.server import LabelStudioServer, ServerConfig, ServerStatus, legacy_token_from_secret
from labeling.webhook import SECRET_HEADER, WebhookEvent, parse_webhook, verify_secret

__all__ = [
    "SECRET_HEADER",
    "STATES",
    "AuthenticationError",
    "ConfigError",
    "ConversionError",
    "InstructionExample",
    "LabelStudioAPIError",
    "LabelStudioClient",
    "LabelStudioServer",
    "LabelingError",
    "PortBusyError",
    "ProjectSettings",
    "PullResult",
    "PulledAnnotation",
    "PushResult",
    "ServerConfig",
    "ServerError",
    "ServerStatus",
    "SyncState",
    "TaskSpec",
    "WebhookAuthError",
    "WebhookError",
    "WebhookEvent",
    "WebhookPayloadError",
    "chip_url",
    "convert_annotation",
    "instructions_html",
    "labeling_config",
    "legacy_token_from_secret",
    "parse_webhook",
    "signup_volunteer",
    "verify_secret",
    "volunteer_id",
]
