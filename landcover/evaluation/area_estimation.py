"""Area and accuracy estimated from a stratified random sample: the design (sample size, allocation) and the
estimators, numpy only.

The sources, by equation number:

- Olofsson, Foody, Herold, Stehman, Woodcock and Wulder (2014), "Good practices for estimating area and
  assessing accuracy of land change", Remote Sensing of Environment 148, 42-57: the total sample size
  (eq. 13, Cochran's for stratified random sampling), the error matrix of estimated area proportions
  (eq. 4: p_ij = W_i n_ij / n_i.), overall, user's and producer's accuracy (eqs. 1-3) and their
  variances (eqs. 5-7), the area proportions and their standard errors (eqs. 9-10) and the area
  (eq. 11: A_j = A_tot p_.j), with 95% intervals of +-1.96 standard errors.
- Stehman (2014), "Estimating area and map accuracy for stratified random sampling when the strata are
  different from the map classes", International Journal of Remote Sensing 35, 4923-4939: every estimate
  here is his, for any strata. A proportion (an area, overall accuracy, a cell of the error matrix) is the
  stratified mean of an indicator y (eq. 2), with variance sum_h W_h^2 s_yh^2 / n_h (eq. 25); user's and
  producer's accuracy are ratios of two such means (eq. 27), with the ratio estimator's variance (eq. 28).
  Where the strata are the map classes these are Olofsson's equations term for term (tests/test_area_
  estimation.py checks both on Olofsson's worked example).

Weights W_h are each stratum's share of the mapped area. The finite population correction (1 - n_h / N_h)
is left out, as in Olofsson's equations: a sample is a tiny share of a map's pixels, and without it the
variances err, if at all, on the wide side.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from landcover.io.errors import PipelineError

Z_95 = 1.96  # the normal quantile of a two-sided 95% interval, as Olofsson et al. 2014 use it


def cochran_sample_size(
    weights: Sequence[float] | np.ndarray,
    expected_users_accuracies: Sequence[float] | np.ndarray,
    target_standard_error: float,
) -> int:
    """Olofsson et al. 2014 eq. 13: n = (sum_i W_i S_i / S(O))^2, S_i = sqrt(U_i (1 - U_i)), rounded up: the
    sample whose overall accuracy has the target standard error where the user's accuracies are as expected."""
    users = np.asarray(expected_users_accuracies, dtype=np.float64)
    spread = float(np.sum(np.asarray(weights, dtype=np.float64) * np.sqrt(users * (1 - users))))
    return max(1, math.ceil((spread / target_standard_error) ** 2 - 1e-9))


def bounded_allocation(total: int, shares: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """`total` points over strata in proportion to `shares`, each between its lower and upper bound: strata
    that fall outside their bounds are set to them and the rest share what is left, until none does; then
    whole numbers by largest remainders, so the counts add up to `total` exactly."""
    shares, lower, upper = (np.asarray(a, dtype=np.float64) for a in (shares, lower, upper))
    fixed = np.zeros(len(shares), dtype=bool)
    counts = np.zeros(len(shares))
    while True:
        free = ~fixed
        left = total - counts[fixed].sum()
        counts[free] = left * shares[free] / shares[free].sum() if shares[free].sum() > 0 else 0.0
        below, above = free & (counts < lower), free & (counts > upper)
        if not (below.any() or above.any()) or free.sum() == 0:
            break
        counts[below], counts[above] = lower[below], upper[above]
        fixed |= below | above
        if fixed.all():
            break
    whole = np.floor(counts + 1e-9).astype(np.int64)
    short = int(total - whole.sum())
    remainders = np.where(whole < upper, counts - whole, -1.0)
    for index in np.argsort(-remainders, kind="stable")[: max(short, 0)]:
        whole[index] += 1
    return whole


def check_allocation_inputs(total: int, pixels: np.ndarray, minimum: int, names: Sequence[str]) -> None:
    if total > pixels.sum():
        raise PipelineError(f"a sample of {total} points is more than the {int(pixels.sum())} pixels with a class")
    small = [(name, int(count)) for name, count in zip(names, pixels) if count < minimum]
    if small:
        listed = ", ".join(f"{name} ({count})" for name, count in small[:5])
        raise PipelineError(
            f"{len(small)} strata have fewer pixels than the minimum of {minimum} points a stratum: {listed}; "
            "lower the minimum or merge them into others"
        )
    if minimum * len(pixels) > total:
        raise PipelineError(
            f"a sample of {total} points cannot give each of the {len(pixels)} strata its minimum of {minimum}"
        )


def proportional_allocation(total: int, pixels: np.ndarray, minimum: int, names: Sequence[str]) -> np.ndarray:
    """Points in proportion to each stratum's pixels, at least `minimum` in each (Olofsson et al. 2014 section
    5.1.2: proportional allocation with rare classes raised to a minimum)."""
    pixels = np.asarray(pixels, dtype=np.int64)
    check_allocation_inputs(total, pixels, minimum, names)
    return bounded_allocation(total, pixels, np.full(len(pixels), minimum), pixels)


def equal_allocation(total: int, pixels: np.ndarray, minimum: int, names: Sequence[str]) -> np.ndarray:
    """The same number of points in every stratum (all of a stratum's pixels where it has fewer)."""
    pixels = np.asarray(pixels, dtype=np.int64)
    check_allocation_inputs(total, pixels, minimum, names)
    return bounded_allocation(total, np.ones(len(pixels)), np.full(len(pixels), minimum), pixels)


# How a sample's points are shared among strata (landcover-sample --allocation)
ALLOCATIONS: dict[str, Callable[[int, np.ndarray, int, Sequence[str]], np.ndarray]] = {
    "proportional": proportional_allocation,
    "equal": equal_allocation,
}


@dataclass(frozen=True)
class Estimate:
    """An estimate and its standard error; NaN where the sample cannot give one (no points to divide by)."""

    value: float
    standard_error: float

    @property
    def half_width(self) -> float:
        """Half the 95% confidence interval's width."""
        return Z_95 * self.standard_error

    def scaled(self, factor: float) -> Estimate:
        return Estimate(self.value * factor, self.standard_error * factor)

    def as_dict(self) -> dict:
        def plain(number: float) -> float | None:
            return None if math.isnan(number) else float(number)

        value, error = plain(self.value), plain(self.standard_error)
        return {
            "estimate": value,
            "standard_error": error,
            "ci95_low": None if value is None or error is None else value - self.half_width,
            "ci95_high": None if value is None or error is None else value + self.half_width,
        }


@dataclass(frozen=True)
class StratifiedSample:
    """Labelled points of a stratified random sample: each point's stratum, map class and reference class."""

    weights: np.ndarray  # (strata,): each stratum's share of the mapped area, summing to 1
    strata: np.ndarray  # (points,): the stratum index of each point
    map_classes: np.ndarray  # (points,): its class in the map (the map class of the stratum where strata are classes)
    reference: np.ndarray  # (points,): its reference class
    num_classes: int

    @property
    def stratum_sizes(self) -> np.ndarray:
        return np.bincount(self.strata, minlength=len(self.weights))

    def _means_and_deviations(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per stratum: the mean of `values` (points, k) and their deviations from it (points, k)."""
        sizes = self.stratum_sizes
        sums = np.zeros((len(self.weights), values.shape[1]))
        np.add.at(sums, self.strata, values)
        means = sums / np.maximum(sizes, 1)[:, None]
        return means, values - means[self.strata]

    def _covariances(self, a_deviations: np.ndarray, b_deviations: np.ndarray) -> np.ndarray:
        """Per stratum and column: the sample covariance of two variables (strata, k), ddof 1."""
        sums = np.zeros((len(self.weights), a_deviations.shape[1]))
        np.add.at(sums, self.strata, a_deviations * b_deviations)
        return sums / np.maximum(self.stratum_sizes - 1, 1)[:, None]

    def proportions(self, indicators: np.ndarray) -> list[Estimate]:
        """Stehman 2014 eqs. 2 and 25: the share of the area where each indicator column (points, k) is 1."""
        means, deviations = self._means_and_deviations(indicators.astype(np.float64))
        variances = self._covariances(deviations, deviations)
        sizes = self.stratum_sizes[:, None]
        values = self.weights @ means
        errors = np.sqrt(np.sum(self.weights[:, None] ** 2 * variances / sizes, axis=0))
        return [Estimate(float(v), float(e)) for v, e in zip(values, errors)]

    def ratios(self, numerators: np.ndarray, denominators: np.ndarray) -> list[Estimate]:
        """Stehman 2014 eqs. 27 and 28: R = Y / X for each column of indicators y and x (points, k)."""
        y_means, y_deviations = self._means_and_deviations(numerators.astype(np.float64))
        x_means, x_deviations = self._means_and_deviations(denominators.astype(np.float64))
        y_total, x_total = self.weights @ y_means, self.weights @ x_means
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = np.where(x_total > 0, y_total / x_total, np.nan)
        spread = (
            self._covariances(y_deviations, y_deviations)
            + ratios**2 * self._covariances(x_deviations, x_deviations)
            - 2 * ratios * self._covariances(y_deviations, x_deviations)
        )
        sizes = self.stratum_sizes[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            variances = np.sum(self.weights[:, None] ** 2 * spread / sizes, axis=0) / x_total**2
        errors = np.sqrt(np.maximum(variances, 0.0))
        return [Estimate(float(r), float(e)) for r, e in zip(ratios, errors)]

    def one_hot(self, classes: np.ndarray) -> np.ndarray:
        return classes[:, None] == np.arange(self.num_classes)


@dataclass(frozen=True)
class Assessment:
    """Accuracy and area estimated from a labelled sample (rows of matrices: map class, columns: reference)."""

    counts: np.ndarray  # (classes, classes): points by map class and reference class
    proportions: np.ndarray  # (classes, classes): estimated area proportions p_ij
    overall: Estimate
    users: list[Estimate]
    producers: list[Estimate]
    area_proportions: list[Estimate]  # p_.j: each class's share of the area, by its reference class
    areas: list[Estimate]  # each class's area, in the unit of total_area


def assess(sample: StratifiedSample, total_area: float) -> Assessment:
    """The error matrix, overall, user's and producer's accuracy and each class's area, from a labelled sample."""
    on_map, in_reference = sample.one_hot(sample.map_classes), sample.one_hot(sample.reference)
    agree = on_map & in_reference
    counts = np.zeros((sample.num_classes, sample.num_classes), dtype=np.int64)
    np.add.at(counts, (sample.map_classes, sample.reference), 1)
    # each cell of the error matrix is the area share where a point is of map class i and reference class j
    cells = (on_map[:, :, None] & in_reference[:, None, :]).reshape(len(sample.strata), -1)
    proportions = np.array([e.value for e in sample.proportions(cells)]).reshape(counts.shape)
    overall = sample.proportions(agree.any(axis=1)[:, None])[0]
    area_proportions = sample.proportions(in_reference)
    return Assessment(
        counts=counts,
        proportions=proportions,
        overall=overall,
        users=sample.ratios(agree, on_map),
        producers=sample.ratios(agree, in_reference),
        area_proportions=area_proportions,
        areas=[estimate.scaled(total_area) for estimate in area_proportions],
    )
