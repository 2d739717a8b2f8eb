"""Label schema, crowd aggregation, retirement, acquisition, the store of record and simulated volunteers."""

from active_learning.posterior import Posterior, Status
from active_learning.schema import Annotation, State

__all__ = ["Annotation", "Posterior", "State", "Status"]
