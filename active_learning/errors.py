"""Exceptions raised by active_learning.

Every message says what was wrong, the value seen and the fix. The hierarchy::

    ActiveLearningError
    ├── AnnotationTableError      the long annotation table failed validation at the door
    │                             (carries the rejects, each with record, field, value and reason)
    ├── TruthFileError            a scenario truth.csv / truth_dates.csv cannot be read as volunteer truth
    ├── AggregationError          the aggregator was misused (not fitted, inputs of the wrong shape)
    ├── RetirementError           a retirement policy or its evidence is inconsistent
    ├── StoreError                the store of record refused an operation
    │   └── MigrationError        the database schema cannot be brought to the current revision
    ├── AcquisitionError          an unknown acquisition function or impossible batch parameters
    ├── LabelerError              a labeler could not be loaded or broke its protocol
    │   └── LabelerUnavailableError   the labeling platform is down or unreachable (retried with backoff)
    └── CampaignError             a campaign cannot run as asked (bad configuration, locked, lost lock, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from active_learning.schema import Reject

__all__ = [
    "AcquisitionError",
    "ActiveLearningError",
    "AggregationError",
    "AnnotationTableError",
    "CampaignError",
    "LabelerError",
    "LabelerUnavailableError",
    "MigrationError",
    "RetirementError",
    "StoreError",
    "TruthFileError",
]


class ActiveLearningError(Exception):
    """Base class of every error raised by active_learning."""


class AnnotationTableError(ActiveLearningError, ValueError):
    """Annotations failed validation; ``rejects`` lists every offending record with its reason."""

    def __init__(self, message: str, rejects: Sequence[Reject] = ()) -> None:
        super().__init__(message)
        self.rejects = tuple(rejects)


class TruthFileError(ActiveLearningError, ValueError):
    """A scenario truth file is missing, lacks columns or holds values that cannot be parsed."""


class AggregationError(ActiveLearningError, ValueError):
    """The aggregator was used before fitting or given inputs that do not match the table."""


class RetirementError(ActiveLearningError, ValueError):
    """A retirement policy has impossible parameters or its evidence does not fit together."""


class StoreError(ActiveLearningError):
    """The store of record refused an operation (unknown building, bad URL, ...)."""


class MigrationError(StoreError):
    """The database cannot be migrated to the head revision."""


class AcquisitionError(ActiveLearningError, ValueError):
    """An unknown acquisition function, inputs that do not fit together, or impossible batch parameters."""


class LabelerError(ActiveLearningError):
    """A labeler could not be loaded, or answered outside its protocol."""


class LabelerUnavailableError(LabelerError):
    """The labeling platform is down or unreachable; the loop waits and retries with backoff."""


class CampaignError(ActiveLearningError):
    """A campaign cannot run as asked: bad configuration, another process holds it, its lock was lost, ..."""
