"""Exceptions of the service, and the short fixed message each one gets at the HTTP edge.

Messages of these exceptions are for logs and the command line (they name the record, the value and the fix);
clients only ever see the fixed ``detail`` of their class, never a message, a path or a traceback. The
hierarchy::

    ServingError                      base class                                    HTTP
    ├── UnknownBuildingError          the building id is not in the store          404 "unknown building"
    ├── VerdictError                  a verdict outside the building's timeline     422 (names the field)
    ├── VerdictConflictError          the store refused the verdict's annotation   409 "verdict refused by the store"
    ├── NotReadyError                 chip cache, footprints or champion missing   503 "... not available"
    └── ExportError                   an export cannot be written (names folder)   500 "export failed"
"""

from __future__ import annotations

__all__ = [
    "ExportError",
    "NotReadyError",
    "ServingError",
    "UnknownBuildingError",
    "VerdictConflictError",
    "VerdictError",
]


class ServingError(Exception):
    """Base class of every error raised by serving; ``status`` and ``detail`` are what a client sees."""

    status = 500
    detail = "internal error"


class UnknownBuildingError(ServingError, KeyError):
    """The building id is not in the store of record."""

    status = 404
    detail = "unknown building"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else self.detail


class VerdictError(ServingError, ValueError):
    """A verdict that does not fit the building's timeline.

    Args:
        field: the body field that was wrong (``gap``, ``first_damaged_date``, ``not_visible``).
        message: what was wrong and how to fix it (returned to the client: it names only the field and the
            timeline's bounds, never stored data).
    """

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class VerdictConflictError(ServingError):
    """The store quarantined the verdict's expert annotation (its reason is in the message)."""

    status = 409
    detail = "verdict refused by the store"


class NotReadyError(ServingError):
    """A resource the request needs is not there yet (chip cache, footprints, champion model).

    Args:
        what: the fixed name of the resource shown to clients (``chip cache``, ``champion model``).
        message: the full explanation with the fix, for logs.
    """

    status = 503

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.detail = f"{what} not available"


class ExportError(ServingError):
    """An export cannot be written; the message names the folder and the fix."""

    status = 500
    detail = "export failed"
