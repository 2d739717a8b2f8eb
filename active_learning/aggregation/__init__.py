"""Crowd aggregation: Dawid-Skene over the latent destruction gap, volunteer error models and gap posteriors
learned together by EM (DESIGN section 3).

Aggregators are small classes with hyperparameters as fields and ``fit(table, n_dates) -> self``; fitted state
lives in attributes ending in ``_``. One module per concept:

- :mod:`~active_learning.aggregation.data`: the long table, validated at the door, as integer arrays;
- :mod:`~active_learning.aggregation.witnesses`: the model and other non-human witnesses;
- :mod:`~active_learning.aggregation.paths` and :mod:`~active_learning.aggregation.confusion`: monotone paths
  and per-date confusions, shared by the models;
- :mod:`~active_learning.aggregation.base`: what every aggregator shares (fit flow, read-outs, an E step under
  frozen parameters for leave-one-out scoring);
- :mod:`~active_learning.aggregation.per_date`: :class:`PerDateDawidSkene`, every answered date an independent
  draw;
- :mod:`~active_learning.aggregation.shift`: :class:`GapDawidSkene`, the default: a review is one perceived gap
  drawn from the volunteer's shift kernel (:mod:`~active_learning.aggregation.kernels`), volunteers are honest
  or saboteurs (:mod:`~active_learning.aggregation.saboteurs`).
"""

from active_learning.aggregation.base import GapAggregator, ReviewLogLikelihood
from active_learning.aggregation.paths import CLASSES
from active_learning.aggregation.per_date import PerDateDawidSkene
from active_learning.aggregation.shift import GapDawidSkene
from active_learning.aggregation.witnesses import GapWitness, ModelEmissions

__all__ = [
    "CLASSES",
    "GapAggregator",
    "GapDawidSkene",
    "GapWitness",
    "ModelEmissions",
    "PerDateDawidSkene",
    "ReviewLogLikelihood",
]
