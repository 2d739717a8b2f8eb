"""The one Settings object: where a campaign keeps its state and how it reaches its services.

Settings come from keyword arguments or from ``STRIKETRACKER_*`` environment variables (read here and nowhere
else). Defaults are the embedded ones, and this module is their one home: everything lives under the work
directory :data:`DEFAULT_WORK_DIR` (the SQLite store ``striketracker.db``, the SQLite MLflow tracking store
``mlflow.db`` with artifacts in ``mlartifacts/``, a local Label Studio under ``labelstudio/``). Secrets are
``SecretStr`` so they never print; services bind to 127.0.0.1 unless told otherwise.

It lives in ``active_learning`` (the campaign's package) so that both top layers, ``serving`` (service and CLI)
and ``experiments`` (benchmarks and the demo), can use it without importing each other.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

if TYPE_CHECKING:
    from model.registry import Tracking

__all__ = ["DEFAULT_WORK_DIR", "Settings", "default_database_url", "default_tracking_uri"]

DEFAULT_WORK_DIR = Path(".work")
"""Root of everything the project writes at run time, relative to the current directory."""

_ENV_PREFIX = "STRIKETRACKER_"


class Settings(BaseModel):
    """Configuration for the CLI and the service.

    Attributes:
        work_dir: root of everything the project writes at run time.
        database_url: SQLAlchemy URL of the store of record (SQLite file by default, PostgreSQL by URL).
        mlflow_tracking_uri: MLflow tracking store (SQLite file by default, or a server URL).
        mlflow_artifact_root: where local MLflow artifacts go.
        label_studio_url: base URL of the Label Studio server.
        label_studio_version: the pinned label-studio release started by the project.
        label_studio_token: API token (legacy or personal access token); empty means "create one".
        label_studio_admin_email / label_studio_admin_password: admin created on a fresh data dir.
        api_host / api_port: where the striketracker service binds.
        api_token: bearer token that write endpoints require.
        webhook_secret: shared secret Label Studio sends in the ``X-Striketracker-Secret`` header.
        public_base_url: base URL under which Label Studio's browser reaches the chip images.
        chip_cache: the chip cache the service serves (images, dates, footprints); default
            ``<work_dir>/chips``.
        ml_backend_url: base URL under which the Label Studio *server* reaches this service (ML backend
            and webhooks); default ``public_base_url``.
        cors_origins: browser origins allowed to fetch chip images cross-origin (the Label Studio editor);
            default the origin of ``label_studio_url``. Every other route answers no cross-origin request.
            From the environment: comma-separated.
        max_request_bytes: largest request body accepted; larger ones get 413 before the body is read.
        max_predict_bytes: the same for the ML backend's ``/predict``, where Label Studio sends every selected
            task (with its data) in one request.
    """

    model_config = ConfigDict(frozen=True)

    work_dir: Path = DEFAULT_WORK_DIR
    database_url: str = ""
    mlflow_tracking_uri: str = ""
    mlflow_artifact_root: str = ""
    label_studio_url: str = "http://127.0.0.1:8089"
    label_studio_version: str = "1.23.2"
    label_studio_token: SecretStr = SecretStr("")
    label_studio_admin_email: str = "admin@striketracker.local"
    label_studio_admin_password: SecretStr = SecretStr("")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    public_base_url: str = ""
    chip_cache: Path | None = None
    ml_backend_url: str = ""
    cors_origins: tuple[str, ...] = ()
    max_request_bytes: int = 1_048_576
    max_predict_bytes: int = 64 * 1_048_576

    @field_validator("api_host")
    @classmethod
    def _refuse_wildcard_without_token(cls, v: str) -> str:
        return v.strip()

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v: object) -> object:
        if isinstance(v, str):
            return tuple(o.strip().rstrip("/") for o in v.split(",") if o.strip())
        return v

    @field_validator("max_request_bytes", "max_predict_bytes")
    @classmethod
    def _positive_limit(cls, v: int) -> int:
        if v < 1024:
            raise ValueError(f"request body limit {v}; allow at least 1024 bytes (a webhook is a few kB)")
        return v

    def model_post_init(self, __context: object) -> None:
        work = self.work_dir.resolve()
        object.__setattr__(self, "work_dir", work)
        if not self.database_url:
            object.__setattr__(self, "database_url", default_database_url(work))
        if not self.mlflow_tracking_uri:
            object.__setattr__(self, "mlflow_tracking_uri", default_tracking_uri(work))
        if not self.mlflow_artifact_root:
            object.__setattr__(self, "mlflow_artifact_root", str(work / "mlartifacts"))
        if not self.public_base_url:
            object.__setattr__(self, "public_base_url", f"http://{self.api_host}:{self.api_port}")
        if self.chip_cache is None:
            object.__setattr__(self, "chip_cache", work / "chips")
        else:
            object.__setattr__(self, "chip_cache", Path(self.chip_cache).resolve())
        if not self.ml_backend_url:
            object.__setattr__(self, "ml_backend_url", self.public_base_url)
        if not self.cors_origins:
            ls = urlsplit(self.label_studio_url)
            object.__setattr__(self, "cors_origins", (f"{ls.scheme}://{ls.netloc}",))
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise ValueError(
                f"cors_origins={list(self.cors_origins)}: '*' allows every origin; give it alone"
            )
        if self.api_host not in ("127.0.0.1", "localhost", "::1") and not self.api_token.get_secret_value():
            raise ValueError(
                f"api_host={self.api_host!r} exposes the service beyond loopback; "
                "set STRIKETRACKER_API_TOKEN so write endpoints stay protected"
            )

    def tracking(self) -> Tracking:
        """The MLflow store these settings name (tracking URI and artifact root)."""
        from model.registry import Tracking

        return Tracking(self.mlflow_tracking_uri, self.mlflow_artifact_root)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``STRIKETRACKER_<FIELD>`` variables, then keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = _ENV_PREFIX + name.upper()
            if key in env:
                values[name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def secret_file(self, name: str) -> Path:
        """A file under the work dir holding a generated secret (created on first use, mode 600)."""
        path = self.work_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:  # created with mode 600, never readable by others even for a moment
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return path  # another process made it first
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path


def default_database_url(work_dir: Path = DEFAULT_WORK_DIR) -> str:
    """The embedded store of record under ``work_dir``: a SQLite file."""
    return f"sqlite:///{Path(work_dir).resolve() / 'striketracker.db'}"


def default_tracking_uri(work_dir: Path = DEFAULT_WORK_DIR) -> str:
    """The embedded MLflow tracking store under ``work_dir``: a SQLite file (artifacts in ``mlartifacts/``)."""
    return f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"
