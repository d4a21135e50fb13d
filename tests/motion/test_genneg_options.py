"""Gen-neG options for a small α, on the motion domain: rounds sized to ≥ N / α, a nested threshold curriculum,
and guiding one reason (``--oracle penetration``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from genneg.config import GenNegConfig, RunConfig
from genneg.genneg import round_size

pytest.importorskip("smplx")
pytest.importorskip("pybullet")


def test_round_size_reaches_the_rare_class_and_stays_capped():
    cfg = RunConfig(domain="motion", genneg=GenNegConfig(samples_per_round=1000))
    assert round_size(1000, 10, cfg.genneg) == 1000  # the option is off by default: the behaviour is unchanged
    on = replace(cfg.genneg, min_minority=200, max_samples_per_round=50_000)
    assert round_size(1000, 10, on) == 20_000  # α̂ = 0.01: 200 / α
    assert round_size(1000, 990, on) == 20_000  # the rarer class is the invalid one
    assert round_size(1000, 500, on) == 1000  # 200 / 0.5 < 1000: nothing more
    assert round_size(1000, 1, on) == 50_000 and round_size(1000, 0, on) == 50_000  # capped; none seen: the cap
    with pytest.raises(ValueError, match="max_samples_per_round"):
        GenNegConfig(samples_per_round=1000, min_minority=10, max_samples_per_round=500)
    with pytest.raises(ValueError, match="oracle_curriculum"):
        GenNegConfig(rounds=1, oracle_curriculum=({"penetration_mm": 300}, {"penetration_mm": 150}))


def sinking_teacher(domain, lifted: int = 0):
    """A denoiser that returns, for clip c, its longest real train window (the last frame repeated to fill 40) sunk
    by depth_c (0 to 420 mm over the clips): the Heun sampler's last step lands exactly on it, so every sample's
    penetration depth is known. The last ``lifted`` clips are raised by 500 mm instead (they float)."""
    x0, cond = domain.dataset("train:masks")
    length = cond["defined"].sum(1).numpy()
    longest = [int(np.flatnonzero(cond["label"].numpy() == c)[np.argmax(length[cond["label"].numpy() == c])])
               for c in range(len(domain.label_names))]  # fmt: skip
    features = domain.physical(x0[longest]).numpy()
    for i, w in enumerate(longest):
        features[i, length[w]:] = features[i, length[w] - 1]
    depth = np.linspace(0.0, 0.42, len(longest))
    depth[len(depth) - lifted:] = -0.5
    features[..., 1] -= depth[:, None]
    table = domain.normalise(features, np.ones(features.shape[:2], bool))

    def teacher(x, sigma, c):
        return table[c["label"]] * c["defined"][..., None]

    return teacher, depth


def tiny_cfg(domain, **genneg):
    cfg = domain.presets()["tiny"]
    return replace(cfg, classifier=replace(cfg.classifier, steps=2, batch_size=8, warmup=0),
                   sampler=replace(cfg.sampler, steps=2),
                   genneg=replace(cfg.genneg, samples_per_round=48, **genneg))  # fmt: skip


def test_threshold_curriculum_labels_each_round_with_its_oracle(domain):
    from genneg.genneg import gen_neg, round_oracle
    from genneg.oracles.motion import DEFAULT_THRESHOLDS

    teacher, depth = sinking_teacher(domain)
    curriculum = ({"penetration_mm": 300.0, "skating_ratio": 1.0, "max_flight_s": 2.0},)
    cfg = tiny_cfg(domain, rounds=2, oracle_curriculum=curriculum)
    final = domain.oracle(["penetration"])
    first = round_oracle(domain, cfg, final, 1)
    assert first.name != final.name and round_oracle(domain, cfg, final, 2) is final  # later rounds: the run's
    stages = gen_neg(teacher, domain, cfg, final)
    r1, r2 = next(stages).round, next(stages).round  # the distillation after them is never started
    # the relaxed round accepts every clip sunk by less than 300 mm, the final one those within the calibrated 30 mm
    # (the guidance of a two-step classifier barely moves the samples: the α's are those of the known depths)
    expect = [np.mean(depth < t / 1000) for t in (300.0, DEFAULT_THRESHOLDS.penetration_mm)]
    assert r1.alpha > r2.alpha
    assert abs(r1.alpha - expect[0]) < 0.2 and abs(r2.alpha - expect[1]) < 0.2
    assert domain.oracle(["penetration"], penetration_mm=300.0).name == "motion:penetration[penetration_mm=300.0]"
    with pytest.raises(ValueError, match="motion reasons"):
        domain.oracle(["somebody_elses_rule"], penetration_mm=300.0)
    with pytest.raises(TypeError):  # a curriculum key the domain's oracle does not take fails loudly
        round_oracle(domain, tiny_cfg(domain, rounds=1, oracle_curriculum=({"depth": 1},)), final, 1)


def test_min_minority_draws_more_samples_when_the_valid_class_is_rare(domain, tmp_path):
    from genneg.genneg import RunContext, run_round

    teacher, depth = sinking_teacher(domain)
    cfg = tiny_cfg(domain, min_minority=12, max_samples_per_round=400)
    oracle = domain.oracle(["penetration"])  # valid: the clips sunk by less than 30 mm (1 of 15)
    r = run_round(teacher, domain, cfg, oracle, 1, RunContext(tmp_path))
    base = run_round(teacher, domain, tiny_cfg(domain), oracle, 1)
    assert base.num_samples == 48
    assert r.num_samples == round_size(48, round(base.alpha * 48), cfg.genneg) > 48
    assert (tmp_path / "labelled_round1_more.safetensors").is_file()
    again = run_round(teacher, domain, cfg, oracle, 1, RunContext(tmp_path, resume=True))  # read back, not redrawn
    assert again.num_samples == r.num_samples and again.alpha == r.alpha


def test_run_guides_one_reason_with_oracle_penetration(domain, tmp_path):
    """`genneg run motion --oracle penetration` (the names reach ``run``): rounds and report judge one reason,
    and the report carries the motion measures."""
    from genneg.run import run

    cfg = tiny_cfg(domain, rounds=1, distil_samples=16, baselines=())
    cfg = replace(cfg, base=replace(cfg.base, steps=2, batch_size=8, warmup=0, checkpoint_every=0),
                  distil=replace(cfg.distil, steps=2, batch_size=8, warmup=0),
                  eval=replace(cfg.eval, num_samples=16, num_nll=4, nll_sigmas=2))  # fmt: skip
    agg = run(domain, cfg, tmp_path / "run", oracle_names=["penetration"])
    for stage in ("base", "round1", "distilled"):
        row = agg["rows"][stage]
        assert list(row["reasons"]) == ["penetration"]
        assert "physdiff_penetrate_mm" in row["domain"] and "nearest_train_m" in row["domain"]
    assert "physdiff_penetrate_mm" in (tmp_path / "run" / "report.md").read_text()


def test_per_reason_round_learns_penetration_frame_by_frame(domain):
    """With ``classifier_per_reason`` the penetration member is a per-frame classifier on the oracle's per-frame
    flags (a window commits it exactly when one of its frames does); skating and float stay window classifiers."""
    from genneg.genneg import run_round

    teacher, depth = sinking_teacher(domain, lifted=3)
    oracle = domain.oracle()
    r = run_round(teacher, domain, tiny_cfg(domain, classifier_per_reason=True), oracle, 1)
    reasons = r.report["reasons"]
    assert reasons["penetration"]["elementwise"] is True
    assert all(not rep.get("elementwise") for k, rep in reasons.items() if k != "penetration")
    member = r.classifier.member("penetration")
    assert r.classifier.reasons == ("penetration", "skating", "float")  # "float" is no name clash with Module.float
    _, cond = domain.dataset("test")
    cond = {k: v[:3] for k, v in cond.items()}
    x = torch.zeros(3, *domain.sample_shape(cond, 3)[1:])
    logits = member.element_logits(x, torch.full((3,), 0.1), cond)
    assert logits.shape == cond["defined"].shape
    assert torch.isinf(logits[~cond["defined"]]).all() and torch.isfinite(logits[cond["defined"]]).all()
    # the oracle's frames explain its window verdicts
    x0, c = domain.dataset("train:masks")
    res = oracle(domain.decode(x0[:64], {k: v[:64] for k, v in c.items()}), {k: v[:64] for k, v in c.items()})
    assert np.array_equal(res.elements["penetration"].any(1), res.reasons["penetration"])
    with pytest.raises(ValueError, match="only the penetration reason"):
        domain.make_element_classifier_net(dict(domain.presets()["tiny"].classifier_net), "skating")
