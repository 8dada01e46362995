"""Comparing replicated runs: mean +- standard deviation, and when a difference counts as an effect.

Every configuration the book compares is trained under several seeds (initialisation and data
order; the test faces stay the same). One seed's score is one draw: two configurations whose
single-seed scores differ by less than the seed-to-seed spread have not been shown to differ.
The book's rule, applied by :func:`compare`:

    a difference of means is an *effect* when it exceeds twice the pooled standard deviation
    ``s_p = sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2))``

(``s_a``, ``s_b`` sample standard deviations over seeds). It is a plain rule that reads the same in
every chapter; with three seeds a side it equals a two-sample t statistic of
``2 / sqrt(2/3) = 2.45`` (two-sided p of about 0.07 at 4 degrees of freedom)::

    from landmarks.evaluation.replicates import compare, Replicates
    pip = Replicates([0.0352, 0.0349, 0.0357])
    print(pip)                                  # 3.53 +- 0.04 (3 seeds), in percent
    compare(pip, Replicates([0.0410, 0.0402, 0.0415]))   # Comparison(difference=-0.0056, ..., effect=True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = ["Replicates", "Comparison", "pooled_std", "compare"]


@dataclass(frozen=True)
class Replicates:
    """One configuration's scores, one per seed (fractions, as the store keeps them)."""

    values: tuple[float, ...]

    def __init__(self, values: Iterable[float]) -> None:
        values = tuple(float(v) for v in values)
        if not values:
            raise ValueError("Replicates needs at least one value")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"Replicates: non-finite scores {values}")
        object.__setattr__(self, "values", values)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n

    @property
    def std(self) -> float:
        """Sample standard deviation (``n - 1`` in the denominator); 0 for one value."""
        if self.n < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    def format(self, scale: float = 100.0, digits: int = 2) -> str:
        """``"3.53 ± 0.04"`` (scaled, e.g. fractions to percent); one value prints without ``±``."""
        if self.n < 2:
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} \u00b1 {scale * self.std:.{digits}f}"

    def __str__(self) -> str:
        return f"{self.format()} ({self.n} seeds)"


def pooled_std(a: Replicates, b: Replicates) -> float:
    """The pooled sample standard deviation of two groups (0 when both have one value)."""
    dof = a.n + b.n - 2
    if dof <= 0:
        return 0.0
    return math.sqrt(((a.n - 1) * a.std ** 2 + (b.n - 1) * b.std ** 2) / dof)


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: ``difference = mean(a) - mean(b)``; ``effect`` when
    ``|difference| > threshold * pooled_std`` and both sides have at least two seeds."""

    difference: float
    pooled_std: float
    threshold: float
    effect: bool
    replicated: bool = True

    @property
    def ratio(self) -> float:
        """``|difference| / pooled_std`` (infinite when the spread is 0 and the means differ)."""
        if self.pooled_std == 0:
            return math.inf if self.difference else 0.0
        return abs(self.difference) / self.pooled_std

    def verdict(self, lower: str = "lower", higher: str = "higher") -> str:
        """``"lower (4.1 s_p)"``, ``"higher (2.3 s_p)"``, ``"within noise (0.8 s_p)"``, or, when a side
        has one seed, ``"one seed, not compared (-0.12 points)"`` (the difference in percentage points)."""
        if not self.replicated:
            return f"one seed, not compared ({100 * self.difference:+.2f} points)"
        ratio = "inf" if math.isinf(self.ratio) else f"{self.ratio:.1f}"
        if not self.effect:
            return f"within noise ({ratio} s_p)"
        return f"{lower if self.difference < 0 else higher} ({ratio} s_p)"


def compare(a: Replicates | Sequence[float], b: Replicates | Sequence[float], threshold: float = 2.0) -> Comparison:
    """The book's rule: is ``mean(a) - mean(b)`` beyond ``threshold`` pooled standard deviations?

    Fewer than two seeds on either side is never an effect (there is no spread to compare with).
    """
    a = a if isinstance(a, Replicates) else Replicates(a)
    b = b if isinstance(b, Replicates) else Replicates(b)
    difference, spread = a.mean - b.mean, pooled_std(a, b)
    replicated = a.n >= 2 and b.n >= 2
    effect = replicated and abs(difference) > threshold * spread
    return Comparison(difference, spread, threshold, effect, replicated)
