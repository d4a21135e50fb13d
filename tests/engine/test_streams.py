"""Named random streams: independent across stages, purposes and run seeds; every draw on its generator's device."""

import inspect
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import genneg.generate
import genneg.training
from genneg import rng
from genneg.checkpoint import load_weights
from genneg.config import EvalConfig, GenNegConfig, SamplerConfig
from genneg.run import run_seed
from genneg.testing import GaussianMixtureDomain

RNG_FILE = str(Path(rng.__file__).resolve())


def test_stream_seeds_are_deterministic_and_distinct():
    names = [("base", "train"), ("round1", "samples"), ("round1", "holdout"), ("round2", "samples"), ("eval",),
             ("eval", "samples"), ("round", 1), ("round1",), ("discriminator", "samples")]
    seeds = {(s, n): rng.stream_seed(s, *n) for s in (0, 1, 2) for n in names}
    assert len(set(seeds.values())) == len(seeds)
    assert all(rng.stream_seed(s, *n) == v for (s, n), v in seeds.items())
    assert all(0 <= v < 2**63 for v in seeds.values())
    assert rng.stream_seed(-1, "x") != rng.stream_seed(1, "x")
    with pytest.raises(TypeError, match="stream names"):
        rng.stream_seed(0, 1.5)


def test_draw_helpers_use_the_generators_device_and_move_the_result():
    g = rng.generator(0, "t")
    for draw in (lambda: rng.randn((3, 2), g, device="cpu", dtype=torch.float64), lambda: rng.rand((4,), g),
                 lambda: rng.randint(0, 5, (6,), g), lambda: rng.randperm(7, g)):
        x = draw()
        assert x.device.type == "cpu"
    a = rng.randn((5,), rng.generator(3, "same"))
    assert torch.equal(a, rng.randn((5,), rng.generator(3, "same")))
    assert not torch.equal(a, rng.randn((5,), rng.generator(3, "other")))


def _tiny_cfg(domain, seed):
    cfg = domain.presets()["default"]
    quick = replace(cfg.base, steps=25, batch_size=64, warmup=5)
    return replace(cfg, seed=seed, base=quick, classifier=quick, distil=quick, sampler=SamplerConfig(steps=5),
                   genneg=GenNegConfig(rounds=2, samples_per_round=400, distil_samples=400, distil_pool=300),
                   eval=EvalConfig(num_samples=300, num_nll=40, nll_sigmas=4))


class Recorder:
    """Records every training loop's seed and every sampler call's seed, by caller."""

    def __init__(self, monkeypatch):
        self.train, self.generate = {}, []
        real_train, real_generate = genneg.training.train, genneg.generate.generate

        def train(model, loss_fn, data, cfg, **kw):
            self.train[kw.get("name", "model")] = cfg.seed
            return real_train(model, loss_fn, data, cfg, **kw)

        def generate(*args, seed=0, **kw):
            self.generate.append(seed)
            return real_generate(*args, seed=seed, **kw)

        for module in ("genneg.models", "genneg.classifier", "genneg.genneg"):
            if hasattr(__import__(module, fromlist=["train"]), "train"):
                monkeypatch.setattr(f"{module}.train", train)
        for module in ("genneg.draws", "genneg.generate"):
            monkeypatch.setattr(f"{module}.generate", generate)
        monkeypatch.setattr("genneg.evaluate.timed_generate",
                            lambda *a, **k: (generate(*a, **k), 1.0))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = {}
    for seed in (0, 1):
        mp = pytest.MonkeyPatch()
        try:
            rec = Recorder(mp)
            d = GaussianMixtureDomain()
            path = tmp_path_factory.mktemp(f"seed{seed}")
            run_seed(d, _tiny_cfg(d, seed), path, d.oracle())
            out[seed] = (rec, path)
        finally:
            mp.undo()
    return out


def test_no_two_streams_of_a_run_coincide(two_seeds):
    rec, _ = two_seeds[0]
    # every training loop has its own stream, except round 1's ablations, which share round 1's by design
    trains = {k: v for k, v in rec.train.items() if k not in ("no_is", "time_independent")}
    assert {"base", "classifier1", "classifier2", "distilled", "discriminator"} <= set(trains)
    assert len(set(trains.values())) == len(trains)
    assert rec.train["no_is"] == rec.train["classifier1"] == rec.train["time_independent"]
    # sampler draws: each round, the distillation and the discriminator on their own stream; every stage's
    # evaluation on the one evaluation stream (the stages are compared on the same noise)
    evals = rng.stream_seed(rng.stream_seed(0, "eval"), "samples")
    others = [s for s in rec.generate if s != evals]
    assert len(others) == len(set(others)) == 4  # round 1, round 2, distillation teacher, discriminator
    assert rec.generate.count(evals) >= 5


def test_evaluation_samples_share_no_row_with_training_draws(two_seeds):
    _, path = two_seeds[0]
    drawn = [load_weights(path / f)[0]["x0"].numpy() for f in
             ("labelled_round1.safetensors", "labelled_round2.safetensors", "distilled.teacher_samples.safetensors",
              "drawn_discriminator.safetensors")]
    drawn = np.concatenate(drawn)
    for stage in ("base", "round1", "round2", "distilled", "no_is", "discriminator"):
        with np.load(path / f"samples_{stage}.npz") as z:
            evaluated = z["samples"]
        shared = (np.abs(evaluated[:, None, :] - drawn[None, :, :]).max(-1) < 1e-7).any()
        assert not shared, stage


def test_two_run_seeds_differ_in_every_stage(two_seeds):
    (rec0, _), (rec1, _) = two_seeds[0], two_seeds[1]
    assert rec0.train.keys() == rec1.train.keys()
    assert all(rec0.train[k] != rec1.train[k] for k in rec0.train)
    assert not set(rec0.generate) & set(rec1.generate)


DRAWS = ("randn", "rand", "randint", "randperm", "normal", "randn_like", "rand_like", "randint_like", "bernoulli",
         "multinomial")


def test_every_seeded_draw_goes_through_rng_on_its_generators_device(monkeypatch, tmp_path):
    """On a CPU a generator of one device paired with a tensor of another cannot raise, so this checks the rule that
    makes it impossible: every draw given a generator is made by ``genneg.rng``, which draws where the generator
    lives. It runs base training, classifier fitting, distillation (fresh targets and a pool), both samplers and the
    NLL bound."""
    bad = []

    def wrap(name, real):
        def draw(*args, **kwargs):
            gen = kwargs.get("generator")
            if gen is not None:
                caller = str(Path(inspect.stack()[1].filename).resolve())
                device = kwargs.get("device")
                if caller != RNG_FILE or (device is not None and torch.device(device) != gen.device):
                    bad.append(f"{name} from {caller}:{inspect.stack()[1].lineno}")
            return real(*args, **kwargs)
        return draw

    for name in DRAWS:
        monkeypatch.setattr(torch, name, wrap(name, getattr(torch, name)))
    d = GaussianMixtureDomain()
    cfg = _tiny_cfg(d, 0)
    cfg = replace(cfg, sampler=replace(cfg.sampler, kind="stochastic"),
                  genneg=replace(cfg.genneg, rounds=1, distil_pool=0, baselines=("rejection", "no_is")))
    run_seed(d, cfg, tmp_path / "a", d.oracle())
    run_seed(d, replace(cfg, genneg=replace(cfg.genneg, distil_pool=200, distil_sigma="loguniform")), tmp_path / "b",
             d.oracle())
    assert not bad, sorted(set(bad))
