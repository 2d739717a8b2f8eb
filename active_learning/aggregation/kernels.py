"""The ways a volunteer errs on a timeline, as kernels P(perceived gap | true gap).

People err on timelines by putting the change one or two images off, or missing it, not by flipping dates
independently. Each way of erring is one row-stochastic ``[T + 1, T + 1]`` matrix (exact, 1..``max_shift`` images
late or early, further off, missed, false alarm on an undamaged building, no relation to the truth); a
volunteer's kernel is a learned mixture of them. Optionally a last way of answering, ``inverted`` (intact and
damaged swapped, as saboteurs answer), is a second answer model rather than a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["KERNEL_ANCHOR", "KernelBasis"]

KERNEL_ANCHOR = 20.0
"""Pseudo-reviews of the starting mixture in the prior of every pooled mixture (the crowd's, the saboteurs')."""


@dataclass(frozen=True)
class KernelBasis:
    """Row-stochastic ``[T + 1, T + 1]`` matrices P(perceived gap | true gap), one per way of erring.

    A volunteer's kernel is their mixture ``sum_c w_c basis_c``. Shifts that run off the timeline are clipped
    to its ends (nobody can mark a change before the first or after the last image); the false-alarm row's
    shape over the dates is learned (pooled) and passed to :meth:`kernels`.

    With ``inverted``, one more way of answering follows the matrices: the review sees the true gap but swaps
    intact and damaged (damaged before the change, intact after), as saboteurs do; it is not a kernel over
    perceived gaps but a second answer model, so it is the last name and has no matrix.
    """

    names: tuple[str, ...]
    fixed: np.ndarray  # [C, G, G]; the false-alarm slice is its g < T part only
    false_alarm: int
    inverted: bool = False

    @classmethod
    def build(cls, n_dates: int, max_shift: int, *, inverted: bool = False) -> KernelBasis:
        n_g = n_dates + 1
        g = np.arange(n_g)
        names: list[str] = ["exact"]
        mats: list[np.ndarray] = [np.eye(n_g)]

        def shifted(k: int) -> np.ndarray:
            m = np.zeros((n_g, n_g))
            m[g[:-1], np.clip(g[:-1] + k, 0, n_dates)] = 1.0
            m[n_dates, n_dates] = 1.0  # an undamaged building cannot be seen damaged late or early
            return m

        for k in range(1, max_shift + 1):
            names += [f"late_{k}", f"early_{k}"]
            mats += [shifted(k), shifted(-k)]
        far = np.zeros((n_g, n_g))
        for row in range(n_dates):
            cols = np.flatnonzero((np.abs(g - row) > max_shift) & (g < n_dates))
            if len(cols):
                far[row, cols] = 1.0 / len(cols)
            else:
                far[row, row] = 1.0
        far[n_dates, n_dates] = 1.0
        miss = np.zeros((n_g, n_g))
        miss[:, n_dates] = 1.0
        false_alarm = np.eye(n_g)
        false_alarm[n_dates] = 0.0  # filled by kernels() from the learned shape
        noise = np.full((n_g, n_g), 1.0 / n_g)
        names += ["far", "miss", "false_alarm", "noise"]
        mats += [far, miss, false_alarm, noise]
        fa_index = names.index("false_alarm")
        if inverted:
            names.append("inverted")
        return cls(tuple(names), np.stack(mats), fa_index, inverted)

    def initial_weights(self, hardness: float) -> np.ndarray:
        """A plausible starting mixture: mostly exact, errors shrinking with their size, more on hard buildings.

        Args:
            hardness: 0 (easy: 85% exact) .. 1 (hard: 50% exact).
        """
        exact = 0.85 - 0.35 * hardness
        w = {"far": 0.01, "miss": 0.04, "false_alarm": 0.02, "noise": 0.02, "inverted": 0.01}
        out = np.array([w[n] if n in w else 0.05 / int(n.split("_")[1]) for n in self.names if n != "exact"])
        out = out / out.sum() * (1.0 - exact)
        return np.insert(out, 0, exact)

    def saboteur_weights(self) -> np.ndarray:
        """The saboteurs' starting mixture: inverted, far off, missed or random more often than exact."""
        w = {"exact": 0.15, "far": 0.15, "miss": 0.2, "false_alarm": 0.02, "noise": 0.1, "inverted": 0.2}
        out = np.array([w.get(n, 0.03) for n in self.names])
        return out / out.sum()

    def matrices(self, false_alarm_shape: np.ndarray) -> np.ndarray:
        """The basis ``[C, G, G]`` with the false-alarm row set to ``false_alarm_shape`` (over dates 0..T-1)."""
        mats = self.fixed.copy()
        mats[self.false_alarm, -1, :-1] = false_alarm_shape
        return mats

    def kernels(self, weights: np.ndarray, false_alarm_shape: np.ndarray) -> np.ndarray:
        """Every volunteer's kernel per difficulty ``[H, V, G, G]`` from mixture weights ``[H, V, C]``.

        The rows sum to one minus the inverted weight: the kernel is the honest part of the answer model.
        """
        mats = self.matrices(false_alarm_shape)
        return np.einsum("hvc,cgp->hvgp", weights[..., : len(mats)], mats)

    def inverted_weights(self, weights: np.ndarray) -> np.ndarray | None:
        """``[H, V]`` weight of inverted answers, or None without that way of answering."""
        return weights[..., -1] if self.inverted else None
