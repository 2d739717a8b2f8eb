"""The error responses every route documents, and the one way routes report a bad field (422)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel

__all__ = ["ERRORS", "ErrorOut", "FieldErrorOut", "field_error"]


class ErrorOut(BaseModel):
    """A short fixed message."""

    detail: str


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class FieldErrorOut(BaseModel):
    """422: which fields were wrong and why (never the values sent)."""

    detail: list[FieldProblem]


ERRORS: dict[int, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "missing or invalid bearer token"},
    404: {"model": ErrorOut, "description": "unknown building"},
    409: {"model": ErrorOut, "description": "refused by the store"},
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": FieldErrorOut, "description": "a field is malformed or outside the timeline"},
    503: {"model": ErrorOut, "description": "a resource is not available yet"},
}


def field_error(loc: tuple[str | int, ...], message: str) -> HTTPException:
    """A 422 naming one field, shaped like FastAPI's own validation errors."""
    return HTTPException(status_code=422, detail=[{"loc": list(loc), "msg": message, "type": "value_error"}])
