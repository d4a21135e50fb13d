"""Numerical robustness: guidance stays finite at the smallest σ, and samplers, the NLL bound and training produce
no NaN on the toy ``tiny`` preset (trained) and on the traffic / motion ``tiny`` networks (initialised, with padded
vehicles, empty maps and padded frames).

Guidance size is measured as the ratio ρ = ‖D_g(x; σ) − D(x; σ)‖ / (σ √d): how far one guidance step moves a sample
relative to the noise level. ``GuidanceTerm.max_ratio`` (``genneg.guidance_max_ratio``) caps ρ; it is off by default.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from genneg.checkpoint import read_json
from genneg.config import SamplerConfig
from genneg.diffusion import EDMPrecond, karras_sigmas
from genneg.generate import generate
from genneg.genneg import stack
from genneg.guidance import GuidanceTerm, guided
from genneg.likelihood import nll_bound
from genneg.run import load_seed
from genneg.sampling import sample_heun, sample_stochastic
from genneg.testing import GaussianMixtureDomain

SIGMA_MIN = 0.002  # the smallest σ every preset's sampler visits


def guidance_step(guided_denoiser, x, sigma, cond=None) -> torch.Tensor:
    """σ² Σ w ∇ log C: what guidance adds to the denoiser at σ, ``[B, ...]`` (computed directly, not as a difference
    of two denoiser outputs, which would lose it to rounding at small σ)."""
    s = torch.full((x.shape[0],), sigma)
    return sigma**2 * guided_denoiser.score_correction(x, s, cond)


def guidance_ratio(guided_denoiser, x, sigma, cond=None) -> torch.Tensor:
    """ρ per sample: the guidance step's length in units of the noise level σ √d."""
    step = guidance_step(guided_denoiser, x, sigma, cond)
    return step.flatten(1).norm(dim=1) / (sigma * math.sqrt(x[0].numel()))


# --------------------------------------------------------------------------------- synthetic worst cases
@pytest.mark.parametrize("steepness", [1e3, 1e30, 1e38, math.inf])
def test_clipped_guidance_is_finite_for_any_classifier_sharpness(steepness):
    """A classifier whose log C has gradient up to infinity: with max_ratio the guided step stays at most
    max_ratio · σ √d, finite, at the smallest σ, and sampling from it gives finite samples."""
    gmm = GaussianMixtureDomain().gmm
    log_c = lambda x, s, c: (x * steepness).sum(1)  # noqa: E731
    clipped = guided(gmm.denoiser, [GuidanceTerm(log_c, max_ratio=1.0)])
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    for sigma in (SIGMA_MIN, SIGMA_MIN / 100, 1.0):
        rho = guidance_ratio(clipped, x, sigma)
        assert torch.isfinite(rho).all() and (rho <= 1.0 + 1e-4).all(), rho.max()
    out = sample_heun(clipped, x * 80.0, karras_sigmas(12, SIGMA_MIN, 80.0))
    assert torch.isfinite(out).all()


def test_unclipped_infinite_guidance_is_reported_never_silent():
    gmm = GaussianMixtureDomain().gmm
    wild = guided(gmm.denoiser, [GuidanceTerm(lambda x, s, c: (x * math.inf).sum(1), name="wild")])
    with pytest.raises(ValueError, match="non-finite"):
        sample_heun(wild, torch.randn(8, 2) * 80.0, karras_sigmas(6, SIGMA_MIN, 80.0))
    with pytest.raises(ValueError, match="non-finite"):
        nll_bound(wild, torch.randn(8, 2), num_sigmas=4)


def test_exact_bayes_classifier_guidance_at_the_smallest_sigma_moves_a_sample_by_its_distance_to_validity():
    """The exact noisy classifier of a half-plane oracle under a Gaussian mixture (the theory's ideal). At σ_min its
    guided step is finite everywhere, negligible (ρ < 1e-3) on the valid side, and on the invalid side moves a sample
    by its distance to the valid set, to within σ: large there by design, never unbounded."""
    domain = GaussianMixtureDomain()
    gmm, plane = domain.gmm, domain.plane
    g = guided(gmm.denoiser, [GuidanceTerm(lambda x, s, c: plane.log_prob_valid(gmm, x, s))])
    x = gmm.sample(2000, torch.Generator().manual_seed(1)).float()
    normal = plane.normal.float()
    along = torch.stack([-normal[1], normal[0]]) / normal.norm()
    foot = plane.offset * normal / normal.dot(normal)  # a point on the boundary a·x = b
    x[:500] = foot + torch.linspace(-2, 2, 500)[:, None] * along + torch.linspace(-1e-3, 1e-3, 500)[:, None] * normal
    distance = (x @ normal - plane.offset) / normal.norm()  # signed, > 0 on the valid side
    step = guidance_step(g, x, SIGMA_MIN).norm(dim=1)
    assert torch.isfinite(step).all()
    valid = distance > 5 * SIGMA_MIN
    assert (step[valid] / (SIGMA_MIN * math.sqrt(2))).max() < 1e-3
    invalid = distance < 0
    assert (step[invalid] <= -distance[invalid] + SIGMA_MIN).all()
    assert (step[invalid] >= 0.99 * -distance[invalid]).all()


# ---------------------------------------------------------------------------- the trained toy tiny run
def test_toy_run_has_no_nan_anywhere(toy_reference):
    """Every evaluation sample, verdict, metric and logged training loss of a whole tiny run is finite."""
    for path in toy_reference.glob("samples_*.npz"):
        with np.load(path) as z:
            for k in z.files:
                assert z[k].dtype == bool or np.isfinite(z[k]).all(), f"{path.name}: {k} holds NaN or inf"
    stages = read_json(toy_reference / "state.json")["stages"]
    assert {"base", "round1", "round2", "distilled", "no_is", "discriminator", "penalty"} <= set(stages)
    for stage, record in stages.items():
        nll = record["metrics"].get("nll")
        if nll is not None:
            assert math.isfinite(nll["mean"]) and math.isfinite(nll["se"]), stage
    lines = [json.loads(line) for line in (toy_reference.parent / "stats.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    assert len(losses) > 10 and all(math.isfinite(v) for v in losses)
    assert all(math.isfinite(r["grad_norm"]) for r in lines if "grad_norm" in r)


@pytest.fixture(scope="module")
def trained(toy_reference):
    cfg, domain, base, classifiers, distilled = load_seed(toy_reference)
    assert len(classifiers) == 2 and distilled is not None
    return cfg, domain, base, classifiers, distilled


def _near_boundaries(domain, n: int, seed: int) -> torch.Tensor:
    """Points on and near the checkerboard's cell edges (where a trained classifier is steepest), normalised."""
    g = torch.Generator().manual_seed(seed)
    k, extent = domain.shape.k, domain.shape.extent
    edges = torch.linspace(-extent, extent, k + 1)
    pts = (torch.rand(n, 2, generator=g) * 2 - 1) * extent
    axis = torch.randint(0, 2, (n,), generator=g)
    snap = edges[torch.randint(0, k + 1, (n,), generator=g)] + 1e-3 * torch.randn(n, generator=g)
    pts[torch.arange(n), axis] = snap
    return pts / domain.scale


def test_trained_guidance_is_finite_at_the_smallest_sigma(trained):
    """Both trained classifiers stacked, at σ_min and below: ρ finite; with guidance_max_ratio = 1 it is capped."""
    cfg, domain, base, classifiers, _ = trained
    x = torch.cat([domain.dataset("test")[0][:500], _near_boundaries(domain, 1500, 0)])
    teacher = stack(base, classifiers, cfg.genneg)
    for sigma in (SIGMA_MIN, SIGMA_MIN / 10):
        rho = guidance_ratio(teacher, x, sigma)
        assert torch.isfinite(rho).all(), sigma
    capped = stack(base, classifiers, replace(cfg.genneg, guidance_max_ratio=1.0))
    rho = guidance_ratio(capped, x, SIGMA_MIN)
    assert torch.isfinite(rho).all() and (rho <= 1.0 + 1e-4).all()


@pytest.mark.parametrize("kind", ["heun", "stochastic"])
def test_samplers_and_nll_bound_are_finite_for_every_trained_stage(trained, kind):
    cfg, domain, base, classifiers, distilled = trained
    stages = {"base": base, "round 1": stack(base, classifiers[:1], cfg.genneg),
              "round 2": stack(base, classifiers, cfg.genneg), "distilled": distilled}
    sampler = SamplerConfig(steps=cfg.sampler.steps, kind=kind)
    held_out = domain.dataset("test")[0][:100]
    for name, denoiser in stages.items():
        x0 = generate(denoiser, domain.sample_shape, 300, sampler, seed=3)
        assert torch.isfinite(x0).all(), name
        for lo in (SIGMA_MIN, 1e-5):  # the bound at the run's σ_min and far below it
            nll = nll_bound(denoiser, held_out, sigma_min=lo, num_sigmas=8, generator=torch.Generator().manual_seed(4))
            assert torch.isfinite(nll).all(), (name, lo)


# ---------------------------------------------------------------- traffic and motion networks of the tiny presets
def _traffic_cond(b: int, n: int, lines: int, points: int):
    g = torch.Generator().manual_seed(0)
    defined = torch.zeros(b, n, dtype=torch.bool)
    defined[:, 0] = True  # every scene has its centre vehicle ...
    defined[: b // 2] = True  # ... half of them are full
    map_defined = torch.rand(b, lines, generator=g) < 0.5
    map_defined[: b // 4] = False  # a quarter have no lane piece at all
    return {"ego": torch.randn(b, 6, generator=g), "defined": defined[:, 1:],
            "map": torch.randn(b, lines, points, 6, generator=g), "map_defined": map_defined}


def _motion_cond(b: int, t: int, labels: int):
    defined = torch.arange(t)[None] < torch.randint(2, t + 1, (b,), generator=torch.Generator().manual_seed(0))[:, None]
    defined[0, 2:] = False  # a window of two frames
    return {"defined": defined, "label": torch.arange(b) % (labels + 1)}  # "no label" included


def _nets(domain_name: str):
    if domain_name == "traffic":
        pytest.importorskip("shapely")
        from genneg.domains.traffic.net import SceneNet
        from genneg.domains.traffic.presets import traffic_presets

        cfg = traffic_presets()["tiny"]
        d = cfg.data
        shape = (16, d["max_vehicles"] - 1, 6)
        cond = _traffic_cond(16, d["max_vehicles"], d["map_lines"], d["map_points"])
        make = lambda out, c: SceneNet(out=out, **c)  # noqa: E731
        return cfg, shape, cond, make("denoiser", cfg.net), make("classifier", cfg.classifier_net), 0.6
    pytest.importorskip("scipy")
    from genneg.domains.motion.data.representation import FRAME_FEATURES
    from genneg.domains.motion.net import MotionTransformer
    from genneg.domains.motion.presets import motion_presets

    cfg, frames, labels = motion_presets()["tiny"], 40, 15
    shape, cond = (8, frames, FRAME_FEATURES), _motion_cond(8, frames, labels)
    den = MotionTransformer(FRAME_FEATURES, frames, labels, **cfg.net)
    clf = MotionTransformer(FRAME_FEATURES, frames, labels, classifier=True,
                            **{**cfg.classifier_net, "label_dropout": 0.0})
    return cfg, shape, cond, den, clf, 1.0


@pytest.mark.parametrize("domain_name", ["traffic", "motion"])
def test_tiny_preset_networks_sample_guide_and_bound_without_nan(domain_name):
    """Initialised tiny-preset networks (output layers perturbed so they are not zero), guided by an initialised
    classifier: both samplers and the NLL bound stay finite, with padding, empty maps and two-frame windows."""
    from genneg.classifier import NoisyClassifier

    torch.manual_seed(0)
    cfg, shape, cond, net, clf_net, sigma_data = _nets(domain_name)
    for p in net.parameters():  # EDM zero-initialises output layers; perturb so the network does something
        p.data.add_(0.02 * torch.randn_like(p))
    base = EDMPrecond(net, sigma_data).eval()
    clf = NoisyClassifier(clf_net, sigma_data).eval()
    teacher = guided(base, [GuidanceTerm(clf.log_prob, weight=1.0)])
    sigmas = karras_sigmas(cfg.sampler.steps, SIGMA_MIN, 80.0)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 80.0
    for name, den in (("base", base), ("guided", teacher)):
        assert torch.isfinite(sample_heun(den, x, sigmas, cond)).all(), name
        out = sample_stochastic(den, x, sigmas, cond, generator=torch.Generator().manual_seed(2))
        assert torch.isfinite(out).all(), name
        x0 = torch.randn(shape, generator=torch.Generator().manual_seed(3))
        assert torch.isfinite(nll_bound(den, x0, cond, num_sigmas=4)).all(), name
    rho = guidance_ratio(teacher, torch.randn(shape), SIGMA_MIN, cond)
    assert torch.isfinite(rho).all()
