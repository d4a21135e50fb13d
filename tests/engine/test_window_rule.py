"""The σ-window rule: a guide is on where it beats the best x-blind predictor by a significant paired margin."""

import math

import numpy as np
import pytest
import torch

from genneg.classifier import auc, classifier_report, informative_sigma_max


class FixedRule:
    """A 'classifier' whose logit is a fixed function of x (blind to σ), the way an exact clean-data rule is."""

    def __init__(self, fn):
        self.fn = fn

    def logit(self, x, sigma, cond=None):
        return self.fn(x[:, 0])


def _discriminator_case(n=20000, off=0.037, seed=0):
    """Data U[0, 1] (label 1) against a model putting ``off`` of its mass on [1.5, 2.5] (label 0), 50/50 like
    discriminator guidance; the exact discriminator's gain over the prior is the Jensen–Shannon divergence."""
    g = torch.Generator().manual_seed(seed)
    data = torch.rand(n, 1, generator=g)
    model = torch.rand(n, 1, generator=g) + 1.5 * (torch.rand(n, 1, generator=g) < off).float()
    x = torch.cat([data, model])
    y = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    inside = math.log(1 / (1 - off))  # p_data / p_model on [0, 1]
    return x, y, FixedRule(lambda v: torch.where(v <= 1.25, torch.full_like(v, inside), torch.full_like(v, -30.0)))


def test_a_near_optimal_discriminator_is_informative_where_a_fixed_margin_switched_it_off():
    x, y, rule = _discriminator_case()
    r = classifier_report(rule, x, y, sigma_range=(0.002, 80.0), seed=1)
    first = r["bins"][0]
    m = 1 - 0.037 / 2  # the mixture's density on [0, 1]
    js = 0.5 * math.log(1 / m) + 0.5 * ((1 - 0.037) * math.log((1 - 0.037) / m) + 0.037 * math.log(2))
    assert first["gain"] == pytest.approx(js, rel=0.25)  # the best possible gain is small ...
    assert first["bce"] > 0.98 * first["reference_bce"]  # ... below what the old 2 % margin demanded
    assert first["informative"] and not r["collapsed"]  # ... yet significant on 4,000 held-out pairs
    assert 0 < r["informative_sigma_max"] < 80.0  # and the rule, wrong at large σ, is switched off there
    assert first["auc"] > 0.5


def test_a_blind_classifier_is_collapsed_and_guides_nowhere():
    x, y, _ = _discriminator_case(n=5000)
    r = classifier_report(FixedRule(lambda v: torch.zeros_like(v)), x, y, seed=2)
    assert r["collapsed"] and r["informative_sigma_max"] == 0.0
    assert all(not b["informative"] for b in r["bins"])
    assert all(abs(b["gain"]) <= 3 * b["gain_se"] + 1e-9 for b in r["bins"])


def test_the_reference_is_what_the_condition_alone_achieves():
    # validity is decided by the condition (c = 1 always valid, c = 0 valid 10 %); x adds a little at small σ only
    n = 20000
    g = torch.Generator().manual_seed(3)
    c = torch.rand(n, generator=g) < 0.5
    y = torch.where(c, torch.ones(n, dtype=torch.bool), torch.rand(n, generator=g) < 0.1)
    x = torch.randn(n, 1, generator=g) * 0.01 + y.float()[:, None]  # at small σ, x reveals y

    class CondAware:
        def logit(self, x, sigma, cond):
            prior = torch.where(cond, torch.tensor(8.0), torch.tensor(math.log(0.1 / 0.9)))
            sharp = torch.where(x[:, 0] > 0.5, 8.0, -8.0)
            return torch.where(sigma < 0.05, sharp, prior)

    r = classifier_report(CondAware(), x, y, c, seed=4)
    constant = -(0.55 * math.log(0.55) + 0.45 * math.log(0.45))
    assert r["reference_bce"] < 0.5 * constant  # the condition-aware x-blind losses, not the constant prior's
    assert r["bins"][0]["informative"] and not r["bins"][-1]["informative"]
    assert r["informative_sigma_max"] == pytest.approx(np.geomspace(0.002, 80, 9)[3])  # the bin holding σ = 0.05


def test_window_edge_is_the_contiguous_run_from_the_smallest_sigma():
    edges = np.geomspace(0.002, 80, 6)
    bins = [{"sigma_lo": lo, "sigma_hi": hi, "informative": f} for lo, hi, f in
            zip(edges, edges[1:], [True, True, False, True, False])]
    assert informative_sigma_max(bins) == pytest.approx(edges[2])
    assert informative_sigma_max([{**b, "informative": False} for b in bins]) == 0.0


def test_auc_matches_the_pairwise_definition_with_ties_and_weights():
    rng = np.random.default_rng(5)
    s = torch.tensor(rng.integers(0, 6, 60), dtype=torch.float32)  # many ties
    pos = torch.tensor(rng.random(60) < 0.4)
    w = torch.tensor(rng.random(60) + 0.1)
    num = den = 0.0
    for i in range(60):
        for j in range(60):
            if pos[i] and not pos[j]:
                wij = float(w[i] * w[j])
                num += wij * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
                den += wij
    assert auc(s, pos, w) == pytest.approx(num / den)
    assert math.isnan(auc(s, torch.ones(60, dtype=torch.bool)))
