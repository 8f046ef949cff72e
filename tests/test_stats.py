"""lifelearn.stats against hand-computed and published values."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from lifelearn.stats import holm, min_detectable_effect, seeds_needed, sign_permutation_p, t_power


def test_mde_at_ten_seeds_matches_gpower():
    # Noncentral-t power as G*Power's "one sample / matched pairs" t test and statsmodels'
    # TTestPower compute it (statsmodels is not installed here: test_t_power_by_simulation
    # checks the number): two tails, alpha 0.05, power 0.80, n = 10 gives d = 0.996, above
    # the z-test bound (z_.975 + z_.8) / sqrt(10) = (1.95996 + 0.84162) / 3.16228 = 0.8860.
    assert min_detectable_effect(1.0, 10) == pytest.approx(0.9960, abs=5e-4)
    assert min_detectable_effect(0.02, 10) == pytest.approx(0.02 * 0.9960, abs=1e-5)
    assert min_detectable_effect(1.0, 10) > (1.959964 + 0.841621) / np.sqrt(10)
    assert min_detectable_effect(1.0, 1) is None and min_detectable_effect(0.0, 5) == 0.0


def test_t_power_by_simulation():
    """At d = 0.996 and n = 10 the two-sided paired t-test rejects in 80% of samples."""
    rng = np.random.default_rng(0)
    d = rng.normal(0.996, 1.0, size=(200_000, 10))
    t = d.mean(1) / (d.std(1, ddof=1) / np.sqrt(10))
    assert np.mean(np.abs(t) > 2.262157) == pytest.approx(0.80, abs=0.005)  # t_{.975, 9}
    assert t_power(0.996, 10) == pytest.approx(0.80, abs=5e-4)
    assert t_power(0.0, 10) == pytest.approx(0.05, abs=1e-12)


def test_seeds_needed_matches_gpower():
    # The textbook matched-pairs sample size (G*Power, d = 0.5, two tails, alpha 0.05,
    # power 0.8): 34 pairs (power 0.808; 33 pairs give 0.795). d = 1: 10 pairs.
    assert seeds_needed(0.5, 1.0) == 34
    assert seeds_needed(-0.01, 0.02) == 34  # the sign of the effect does not matter
    assert t_power(0.5, 33) < 0.8 <= t_power(0.5, 34)
    assert seeds_needed(1.0, 1.0) == 10
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(0.3, 0.0) == 2
    assert seeds_needed(1e-6, 1.0) is None  # more than 10^6 seeds


def test_exact_sign_permutation_by_hand():
    # x = (1, 2, -0.5), sum 2.5; of the 8 sign flips only (1, 2, -0.5) and (1, 2, 0.5)
    # reach >= 2.5: p = 2/8. "less": sums <= 2.5 are the other 7 flips and the identity.
    assert sign_permutation_p([1, 2, -0.5]) == (0.25, "exact")
    assert sign_permutation_p([1, 2, -0.5], direction="less") == (7 / 8, "exact")
    # margin 1: x = (0, 1, -1.5), sum -0.5; flips of x2, x3 give -0.5, 2.5, 0.5, -2.5, each
    # twice (x1 = 0): 6 of 8 reach >= -0.5.
    assert sign_permutation_p([1, 2, -0.5], margin=1.0) == (0.75, "exact")
    # all three differences on the claimed side: only the identity, 1/8
    assert sign_permutation_p([0.10, 0.07, 0.14]) == (0.125, "exact")


def test_sign_permutation_enumerates_up_to_16_and_samples_beyond():
    x = np.linspace(-0.2, 1.0, 16)
    p, method = sign_permutation_p(x)
    hand = sum(np.dot(s, x) >= x.sum() - 1e-12 for s in itertools.product([-1, 1], repeat=16)) / 2**16
    assert method == "exact" and p == pytest.approx(hand, abs=1e-15)
    p, method = sign_permutation_p(np.linspace(-0.2, 1.0, 20))
    assert method == "monte carlo" and p == sign_permutation_p(np.linspace(-0.2, 1.0, 20))[0]
    assert 1 / (1 + 2**16) <= p < 0.01


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == [0.02] and holm([]) == []


def test_paired_interval_by_hand_and_equal_to_scipy_stats_t():
    """[1, 2, 3]: mean 2, sd 1, t_{0.975, 2} = 4.302652729911275 (tables: 4.303), half-width
    4.3027 / sqrt(3) = 2.4841; the quantile (scipy.special.stdtrit) is scipy.stats.t.ppf's own."""
    import numpy as np
    from scipy.stats import t as student_t

    from lifelearn.stats import paired_interval

    mean, low, high = paired_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2 - 2.4841377, abs=1e-6) and high == pytest.approx(2 + 2.4841377, abs=1e-6)
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10, 40):
        d = rng.normal(size=n)
        half = student_t.ppf(0.975, n - 1) * d.std(ddof=1) / np.sqrt(n)
        assert paired_interval(d)[1:] == (float(d.mean()) - float(half), float(d.mean()) + float(half))
    assert paired_interval([0.5]) == (0.5, None, None)
