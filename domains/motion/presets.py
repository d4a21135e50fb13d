"""Named run presets of the motion domain: ``tiny`` (tests, ~1-2 min on 2 CPU cores), ``demo`` (<= 15 min on 2 CPU
cores), ``cpu`` (a base worth guiding: ~3–4.5 h of training on one CPU core), ``paper`` (MDM-sized, for a GPU)."""

from __future__ import annotations

from dataclasses import replace

from genneg.config import EvalConfig, GenNegConfig, RunConfig, SamplerConfig
from genneg.training import TrainConfig

__all__ = ["motion_presets"]


def motion_presets() -> dict[str, RunConfig]:
    """``{name: RunConfig}``; ``data`` holds ``WindowConfig`` fields (+ ``model``, ``cache_dir``)."""
    demo = RunConfig(
        domain="motion",
        preset="demo",
        data={"stride": 1},
        net={"width": 96, "depth": 3, "heads": 4, "ff": 192, "label_dropout": 0.1},  # ~0.13 s/step on 1 core
        classifier_net={"width": 64, "depth": 2, "heads": 4, "ff": 128},
        base=TrainConfig(steps=2500, batch_size=32, lr=1e-3, warmup=200, checkpoint_every=500),
        classifier=TrainConfig(steps=400, batch_size=64, lr=1e-3, warmup=50, ema_decay=0.99, checkpoint_every=0),
        distil=TrainConfig(steps=500, batch_size=32, lr=3e-4, warmup=50, checkpoint_every=0),
        sampler=SamplerConfig(steps=12, batch_size=512),
        genneg=GenNegConfig(rounds=2, samples_per_round=512, distil_samples=512),
        eval=EvalConfig(num_samples=384, num_nll=30, nll_sigmas=16),
    )
    tiny = replace(
        demo,
        preset="tiny",
        data={},
        net={"width": 64, "depth": 2, "heads": 4, "ff": 128, "label_dropout": 0.1},
        classifier_net={"width": 32, "depth": 1, "heads": 2, "ff": 64},
        base=replace(demo.base, steps=300, batch_size=32, warmup=30, checkpoint_every=100),
        classifier=replace(demo.classifier, steps=100, batch_size=32, warmup=10),
        distil=replace(demo.distil, steps=100, batch_size=32, warmup=10),
        sampler=SamplerConfig(steps=8, batch_size=256),
        genneg=replace(demo.genneg, samples_per_round=192, distil_samples=192),
        eval=EvalConfig(num_samples=192, num_nll=30, nll_sigmas=8),
    )
    paper = replace(
        demo,
        preset="paper",
        data={"stride": 1},
        net={"width": 512, "depth": 8, "heads": 4, "ff": 1024, "label_dropout": 0.1, "dropout": 0.1},
        classifier_net={"width": 256, "depth": 4, "heads": 4, "ff": 512},
        base=TrainConfig(steps=100_000, batch_size=256, lr=2e-4, warmup=1000, checkpoint_every=5000),
        classifier=TrainConfig(steps=10_000, batch_size=256, lr=2e-4, warmup=500, ema_decay=0.999),
        distil=TrainConfig(steps=20_000, batch_size=256, lr=1e-4, warmup=500, checkpoint_every=5000),
        sampler=SamplerConfig(steps=32, batch_size=2048),
        genneg=GenNegConfig(rounds=2, samples_per_round=20_000, distil_samples=20_000),
        eval=EvalConfig(num_samples=10_000, num_nll=30, nll_sigmas=64),
    )
    cpu = _cpu(demo)
    return {"tiny": tiny, "demo": demo, "cpu": cpu, "paper": paper, "default": replace(demo, preset="default")}


def _cpu(demo: RunConfig) -> RunConfig:
    """A base worth guiding, trained on one CPU core: 1.63 M parameters, 30,000 steps of batch 32 with the
    forward-kinematics loss, 0.38 s a step on one core of the shared 2-core CPU machine (docs/motion.md)."""
    return replace(
        demo,
        preset="cpu",
        # the forward-kinematics loss (10 per m², below σ = 1): benchmarks/motion_fk_loss.py measured 98.4 -> 89.8 %
        # invalid after 2,000 steps of the demo network
        data={"stride": 1, "fk_weight": 10.0, "fk_sigma_max": 1.0},
        net={"width": 192, "depth": 4, "heads": 4, "ff": 512, "kernel": 5, "label_dropout": 0.1},
        # classifiers read the kinematics of the base's denoised estimate (docs/motion.md, "Classifiers that read the
        # kinematics"): on 8,000 samples of the shipped base, round 1 33.2 % invalid against 37.9 % on x_σ
        classifier_net={"width": 96, "depth": 2, "heads": 4, "ff": 192, "kernel": 5, "head": "frames", "physics": True},
        # 30,000 steps: 34.0 % invalid on the 256 test windows against 39.1 % for the 15,000-step schedule
        base=TrainConfig(steps=30_000, batch_size=32, lr=5e-4, warmup=300, checkpoint_every=500),
        classifier=TrainConfig(steps=3000, batch_size=64, lr=5e-4, warmup=100, ema_decay=0.995, weight_decay=0.01,
                               checkpoint_every=500),  # fmt: skip
        distil=TrainConfig(steps=4000, batch_size=32, lr=2e-4, warmup=200, checkpoint_every=1000),
        sampler=SamplerConfig(steps=18, batch_size=256),
        # the reference rows a multi-hour CPU run can afford: rejection sampling (free) and penalty guidance (no
        # training); the trained ablations (no importance weights, time-independent, discriminator) are left out
        genneg=GenNegConfig(rounds=2, samples_per_round=8000, distil_samples=4000, classifier_input="denoised",
                            distil_pool=24_000, distil_sigma="loguniform", baselines=("rejection", "penalty")),
        eval=EvalConfig(num_samples=256, num_nll=64, nll_sigmas=16),
    )
