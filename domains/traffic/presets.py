"""Run presets of the traffic domain: ``tiny`` (tests, ~2 min on 2 CPU cores), ``demo`` (<= 15 min on 2 CPU cores,
data generation included), ``cpu`` (12 vehicles on the ``cpu`` SUMO data, a base sized for 2-3 hours of
``genneg train`` on 2 CPU cores), ``paper`` (12 vehicles, larger network and budgets, for a GPU)."""

from __future__ import annotations

from dataclasses import replace

from genneg.config import EvalConfig, GenNegConfig, RunConfig, SamplerConfig, SigmaConfig
from genneg.training import TrainConfig

__all__ = ["traffic_presets"]


def traffic_presets() -> dict[str, RunConfig]:
    demo = RunConfig(
        domain="traffic",
        preset="demo",
        # 6 vehicle slots (the paper: 12) so a base trained for minutes on a CPU leaves a valid fraction to guide
        data={"preset": "demo", "scene": {"max_vehicles": 6}, "map_lines": 96, "map_points": 5},
        net={"width": 64, "depth": 2, "heads": 4},
        classifier_net={"width": 64, "depth": 2, "heads": 4},
        base=TrainConfig(steps=4000, batch_size=64, lr=2e-3, warmup=100, checkpoint_every=500, ema_decay=0.995),
        classifier=TrainConfig(steps=500, batch_size=64, lr=1e-3, warmup=50, ema_decay=0.99, checkpoint_every=250),
        distil=TrainConfig(steps=800, batch_size=64, lr=5e-4, warmup=50, ema_decay=0.99, checkpoint_every=400),
        sampler=SamplerConfig(steps=16, batch_size=512),
        # guidance_sigma_min stays 0: with a collapsed classifier (auto window 0) a positive lower edge makes the
        # engine build an inverted σ window and raise
        genneg=GenNegConfig(rounds=2, samples_per_round=2000, distil_samples=2000, penalty_weight=1.0),
        eval=EvalConfig(num_samples=1000, num_nll=300, nll_sigmas=8),
    )
    tiny = replace(
        demo,
        preset="tiny",
        # the 4 vehicles nearest each centre (of the stored 12): a base trained for seconds still has valid samples
        data={"preset": "tiny", "max_vehicles": 4, "map_lines": 96, "map_points": 5},
        net={"width": 32, "depth": 1, "heads": 2},
        classifier_net={"width": 32, "depth": 1, "heads": 2},
        base=replace(demo.base, steps=400, checkpoint_every=0),
        classifier=replace(demo.classifier, steps=80, checkpoint_every=0),
        distil=replace(demo.distil, steps=80, checkpoint_every=0),
        sampler=SamplerConfig(steps=8, batch_size=512),
        genneg=replace(demo.genneg, samples_per_round=256, distil_samples=256),
        eval=EvalConfig(num_samples=256, num_nll=64, nll_sigmas=4),
    )
    paper = replace(
        demo,
        preset="paper",
        data={"preset": "paper", "scene": {"max_vehicles": 12}, "map_lines": 128, "map_points": 5, "workers": 16},
        net={"width": 256, "depth": 6, "heads": 8},
        classifier_net={"width": 256, "depth": 4, "heads": 8},
        base=TrainConfig(steps=100_000, batch_size=512, lr=3e-4, warmup=2000, checkpoint_every=5000),
        classifier=TrainConfig(steps=20_000, batch_size=512, lr=3e-4, warmup=500, ema_decay=0.999),
        distil=TrainConfig(steps=30_000, batch_size=512, lr=1e-4, warmup=500, checkpoint_every=5000),
        sampler=SamplerConfig(steps=32, batch_size=4096),
        genneg=replace(demo.genneg, samples_per_round=50_000, distil_samples=50_000),
        eval=EvalConfig(num_samples=20_000, num_nll=2000, nll_sigmas=32),
    )
    cpu = replace(
        demo,
        preset="cpu",
        # N = 12 (the ego + 11 generated) on 115,644 training scenes from 122 networks; every lane segment (<= 30 m,
        # 6 points) within 55 m, at most 128: 0.4 % of data vehicles are > 2 m from every lane the model sees
        data={"preset": "cpu", "map_lines": 128, "map_points": 6, "segment_length": 30.0},
        # scene-frame offsets in the relative features and pair embeddings in the attention values: a vehicle reads
        # the direction to its neighbours (without it 62 % of scenes held a collision, mostly duplicated vehicles)
        net={"width": 128, "depth": 4, "heads": 4, "relative_values": True},
        classifier_net={"width": 128, "depth": 3, "heads": 4, "relative_values": True},
        # AdamW, cosine decay after warm-up, EMA of the weights; batches of 64: 2.0 s per step measured on one thread of
        # the 2-core box under a load of 13 (its other jobs); a few times faster on an idle core
        base=TrainConfig(steps=12_000, batch_size=64, lr=5e-4, warmup=300, lr_decay="cosine", weight_decay=0.01,
                         ema_decay=0.999, checkpoint_every=250),
        # validity is decided below ~0.5 m (0.02 units of 25 m); EDM's ln σ ~ N(-1.2, 1.2²) trains there 1.2 % of the
        # time, N(-2.2, 1.6²) 17 %, still 2.7 % above σ = 2 (the scene's radius)
        base_sigma=SigmaConfig(p_mean=-2.2, p_std=1.6),
        classifier=TrainConfig(steps=3000, batch_size=64, lr=3e-4, warmup=100, ema_decay=0.995, checkpoint_every=500),
        distil=TrainConfig(steps=4000, batch_size=64, lr=2e-4, warmup=100, ema_decay=0.999, checkpoint_every=500),
        sampler=SamplerConfig(steps=18, batch_size=256),
        genneg=replace(demo.genneg, samples_per_round=10_000, distil_samples=10_000),
        # the learning curve's held-out evaluation: small enough to run every 1000 steps without doubling the time
        eval=EvalConfig(num_samples=512, num_nll=256, nll_sigmas=8),
    )
    return {"tiny": tiny, "demo": demo, "cpu": cpu, "paper": paper}
