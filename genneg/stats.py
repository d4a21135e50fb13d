"""Small statistics used in every report: Wilson intervals for rates, mean ± standard error, intervals over seeds."""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["wilson_interval", "mean_interval"]


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (well behaved at 0 and 1, unlike the normal one)."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


# two-sided 95 % Student t quantiles for small numbers of seeds
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_interval(values: Sequence[float]) -> dict:
    """Mean over seeds with a 95 % t-interval half-width (NaN half-width for a single seed)."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    if not v:
        return {"mean": math.nan, "half_width": math.nan, "n": 0}
    m = sum(v) / len(v)
    if len(v) == 1:
        return {"mean": m, "half_width": math.nan, "n": 1}
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))
    return {"mean": m, "half_width": _T95.get(len(v) - 1, 1.96) * sd / math.sqrt(len(v)), "n": len(v)}
