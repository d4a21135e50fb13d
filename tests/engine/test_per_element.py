"""Per-element oracle flags, per-element classifiers (element BCE, log C = Σ log σ(ℓ)) and per-reason rounds."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genneg.classifier import NoisyClassifier, element_bce, fit_classifier, logit_of_log_prob
from genneg.config import GenNegConfig, SamplerConfig
from genneg.genneg import RunContext, load_classifier, run_round, stack
from genneg.labelling import label
from genneg.oracle import FunctionOracle, OracleOutputError, OracleResult
from genneg.reasons import ReasonClassifiers, member_slot
from genneg.sampling import sample
from genneg.testing import GaussianMixtureDomain
from genneg.training import TrainConfig


def test_element_bce_is_the_weighted_sum_over_existing_elements():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, math.inf, math.inf], [-3.0, 1.5, 0.0]])
    valid = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    exists = torch.tensor([[True, True, True], [True, False, False], [True, True, False]])
    w = torch.tensor([0.4, 1.6, 0.9])

    def bce(l, y):  # -[y log σ(l) + (1 - y) log(1 - σ(l))]
        return -(y * math.log(1 / (1 + math.exp(-l))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-l))))

    manual = [w[b].item() * sum(bce(logits[b, e].item(), valid[b, e].item()) for e in range(3) if exists[b, e])
              for b in range(3)]
    out = element_bce(logits, valid, exists, w)
    torch.testing.assert_close(out, torch.tensor(manual), rtol=1e-5, atol=1e-6)
    lg = logits.clone().requires_grad_(True)
    element_bce(lg, valid, exists, w).sum().backward()
    assert torch.isfinite(lg.grad).all() and (lg.grad[~exists] == 0).all()  # absent elements: no signal, no NaN


class ElementNet(torch.nn.Module):
    """Per-element logits ℓ_e = a_e · x_in_e + b_e of points [B, E, 2]; +inf where an element is absent."""

    def __init__(self, e=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(torch.randn(e, 2, generator=g))
        self.b = torch.nn.Parameter(torch.randn(e, generator=g))

    def forward(self, x_in, c_noise, cond):
        logit = (x_in * self.a).sum(-1) + self.b
        return logit if cond is None else logit.masked_fill(~cond["exists"], math.inf)


def test_log_prob_sums_log_sigmoid_of_elements_and_its_gradient():
    model = NoisyClassifier(ElementNet(), sigma_data=0.5, elementwise=True)
    g = torch.Generator().manual_seed(1)
    x, sigma = torch.randn(4, 3, 2, generator=g), torch.tensor([0.01, 0.3, 1.0, 5.0])
    cond = {"exists": torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.bool)}
    c_in = (sigma**2 + 0.25).rsqrt()[:, None, None]
    ell = ((c_in * x) * model.net.a).sum(-1) + model.net.b  # [B, E]
    expected = torch.where(cond["exists"], F.logsigmoid(ell), 0.0).sum(1)
    xg = x.clone().requires_grad_(True)
    lp = model.log_prob(xg, sigma, cond)
    torch.testing.assert_close(lp, expected)
    (grad,) = torch.autograd.grad(lp.sum(), xg)
    manual = (1 - ell.sigmoid())[..., None] * model.net.a * c_in * cond["exists"][..., None]  # d log σ(ℓ) = (1 - σ) dℓ
    torch.testing.assert_close(grad, manual.detach())
    # the sample's logit is the logit of C = Π σ(ℓ_e), so reports and calibration judge it like any classifier
    torch.testing.assert_close(model.logit(x, sigma, cond).sigmoid(), expected.exp(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(logit_of_log_prob(torch.tensor([math.log(0.25)])), torch.tensor([math.log(1 / 3)]))
    model.log_temperature.fill_(math.log(2.0))  # temperatures divide each element's logit
    halved = torch.where(cond["exists"], F.logsigmoid(ell / 2), 0.0).sum(1)
    torch.testing.assert_close(model.log_prob(x, sigma, cond), halved)


def test_fit_classifier_learns_per_element_labels():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(600, 3, 2, generator=g)
    ok = x0[..., 0] < 0.8  # element e valid where its first coordinate < 0.8
    exists = torch.rand(600, 3, generator=g) < 0.8
    exists[:, 0] = True
    cond = {"exists": exists}
    labels = (ok | ~exists).all(1)
    cfg = TrainConfig(steps=300, batch_size=128, lr=2e-2, warmup=10, ema_decay=0.0, checkpoint_every=0)
    model = NoisyClassifier(ElementNet(), 0.5, elementwise=True)
    with pytest.raises(ValueError, match="per-element labels"):
        fit_classifier(model, x0, labels, cfg, cond=cond, alpha=labels.float().mean().item())
    model = fit_classifier(model, x0, labels, cfg, cond=cond, alpha=labels.float().mean().item(),
                           sigma_range=(0.002, 0.01), elements=(ok, exists))
    with torch.no_grad():
        ell = model.element_logits(x0, torch.full((600,), 0.002), cond)
    assert ((ell > 0) == ok)[exists].float().mean() > 0.95


def _vehicles(points, cond=None):
    """A toy oracle with per-element flags: 3 "vehicles" per sample, element e "far" when its x > 1.2."""
    far = np.asarray(points)[..., 0] > 1.2  # [B, 3]
    return OracleResult(~far.any(1), {"far": far.any(1)}, elements={"far": far})


def test_oracle_result_elements_are_checked_concatenated_taken_and_labelled():
    far = np.array([[True, False], [False, False]])
    with pytest.raises(OracleOutputError, match="disagree"):
        OracleResult(np.array([True, True]), {"far": np.array([False, False])}, elements={"far": far})
    with pytest.raises(OracleOutputError, match="per-element"):
        OracleResult(np.array([True]), {"far": np.array([False])}, elements={"far": np.array([False])})
    r = OracleResult(np.array([False, True]), {"far": far.any(1)}, elements={"far": far},
                     element_defined=np.array([[True, True], [True, False]]))
    both = OracleResult.concat([r, OracleResult.undefined(1, ["far"])])
    assert both.elements["far"].shape == (3, 2) and not both.element_defined[2].any()
    assert both.take([0]).elements["far"].tolist() == [[True, False]]

    def flaky(points, cond=None):
        if np.abs(np.asarray(points)).max() > 5:
            raise RuntimeError("no verdict")
        return _vehicles(points, cond)

    pts = np.array([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0]], [[9.0, 0.0]] * 3, [[0.1, 0.2]] * 3])  # 9: raises
    out = label(FunctionOracle("far", flaky), pts, batch_size=3)
    assert out.defined.tolist() == [True, False, True]
    assert out.elements["far"].tolist() == [[False, True, False], [False] * 3, [False] * 3]
    assert out.element_defined.tolist() == [[True] * 3, [False] * 3, [True] * 3]


class VehicleGMM(GaussianMixtureDomain):
    """Three points per sample from the 2-D mixture; reasons "far" (per element) and "left" (per sample)."""

    def dataset(self, split):
        x, _ = super().dataset(split)
        return x[: len(x) // 3 * 3].view(-1, 3, 2), None

    def sample_shape(self, cond, n):
        return (n, 3, 2)

    def make_denoiser_net(self, cfg):
        raise NotImplementedError("the tests sample from the exact mixture")

    def make_classifier_net(self, cfg):
        return _Flat(1)

    def make_element_classifier_net(self, cfg, reason):
        return _Flat(3)

    def decode(self, x0, cond=None):
        return x0.detach().cpu().numpy()

    def oracle(self, names=None):
        def verdict(points, cond=None):
            r = _vehicles(points)
            left = np.asarray(points)[:, :, 0].mean(1) < -0.9
            return OracleResult(r.valid & ~left, {**r.reasons, "left": left}, elements=r.elements)

        return FunctionOracle("vehicles", verdict, reasons=("far", "left"))


class _Flat(torch.nn.Module):
    def __init__(self, out):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(7, 64), torch.nn.SiLU(), torch.nn.Linear(64, out))

    def forward(self, x_in, c_noise, cond):
        y = self.net(torch.cat([x_in.flatten(1), c_noise[:, None]], 1))
        return y[:, 0] if y.shape[1] == 1 else y


def _points_denoiser(gmm):
    return lambda x, s, c=None: gmm.denoiser(x.reshape(-1, 2), s.repeat_interleave(3), None).view_as(x)


@pytest.mark.parametrize("split, reads", [("train", "noisy"), ("val", "noisy"), ("train", "denoised")])
def test_per_reason_round_fits_saves_and_guides(tmp_path, split, reads):
    d = VehicleGMM()
    cfg = d.presets()["default"]
    quick = TrainConfig(steps=300, batch_size=128, lr=3e-3, warmup=10, ema_decay=0.9, checkpoint_every=0)
    cfg = replace(cfg, classifier=quick, sampler=SamplerConfig(steps=8),
                  genneg=GenNegConfig(rounds=1, samples_per_round=600, classifier_per_reason=True,
                                      calibration_split=split, classifier_sigma_max=10.0, classifier_input=reads))
    base = _points_denoiser(d.gmm)
    r = run_round(base, d, cfg, d.oracle(), 1, RunContext(tmp_path))
    assert isinstance(r.classifier, ReasonClassifiers) and set(r.classifier.reasons) == {"far", "left"}
    assert r.report["per_reason"] and r.report["reasons"]["far"]["elementwise"]
    assert not r.report["reasons"]["left"]["elementwise"] and "bins" in r.report
    assert r.classifier.member("far").elementwise
    assert all((r.classifier.member(k).denoiser is base) == (reads == "denoised") for k in ("far", "left"))
    assert (tmp_path / "labelled_round1_val.safetensors").exists() == (split == "val")
    again = load_classifier(d, cfg, tmp_path / "classifier1.safetensors", base)
    x, s = torch.randn(5, 3, 2), torch.full((5,), 0.3)
    torch.testing.assert_close(again.log_prob(x, s), r.classifier.log_prob(x, s))
    resumed = run_round(base, d, cfg, d.oracle(), 1, RunContext(tmp_path, resume=True))
    torch.testing.assert_close(resumed.classifier.log_prob(x, s), r.classifier.log_prob(x, s))
    if split == "train":  # guidance by the summed reasons lowers each infraction
        assert not any(r.report["reasons"][k]["collapsed"] for k in ("far", "left"))
        sigmas = torch.tensor([10.0, 3.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.0])
        gen = lambda m: sample(m, (3000, 3, 2), sigmas, generator=torch.Generator().manual_seed(0))  # noqa: E731
        before, after = d.oracle()(gen(base).numpy()), d.oracle()(gen(stack(base, [r.classifier], cfg.genneg)).numpy())
        for k in ("far", "left"):
            assert after.reasons[k].mean() < 0.8 * before.reasons[k].mean()


def test_config_choices_are_checked():
    with pytest.raises(ValueError, match="calibration_split"):
        GenNegConfig(calibration_split="test")
    assert GenNegConfig().calibration_split == "train" and not GenNegConfig().classifier_per_reason


def test_reason_names_that_are_no_module_names_keep_their_members_apart():
    """A reason called "float" (motion) or "a.b" cannot be an nn.ModuleDict key: it gets a slot of its own, the
    others keep their name (so saved rounds of "collision" and "offroad" still load)."""
    names = ["collision", "float", "train", "a.b"]
    members = {n: NoisyClassifier(ElementNet(), sigma_data=0.5, elementwise=True) for n in names}
    rc = ReasonClassifiers(members)
    assert rc.reasons == tuple(names)
    assert [member_slot(n) for n in names] == ["collision", "reason_float", "reason_train", "reason_a_b"]
    assert all(rc.member(n) is members[n] for n in names)
    assert any(k.startswith("members.collision.") for k in rc.state_dict())
    again = ReasonClassifiers({n: NoisyClassifier(ElementNet(4), sigma_data=0.5, elementwise=True) for n in names})
    with pytest.raises(RuntimeError):  # another shape: the slots line up name by name
        again.load_state_dict(rc.state_dict())
    with pytest.raises(KeyError, match="no classifier for reason 'skating'"):
        rc.member("skating")
