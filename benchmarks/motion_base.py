"""A short motion base training and what its samples look like under the physical oracle.

    OMP_NUM_THREADS=1 python benchmarks/motion_base.py --preset demo --steps 600 --n 128 --tag demo-600

Trains a base denoiser for ``--steps`` steps (the preset's net and data, with the overrides given), samples ``--n``
windows on full-length test conditions and on the test split's own masks, and writes to
``benchmarks/results/motion_base_<tag>.json``: seconds per training step, infraction rates per reason (with
Wilson intervals), the median worst-frame depth below the floor, the pelvis-height jitter (mean absolute second
difference, mm per frame) and, with auxiliary channels, their distance to the kinematics.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from genneg.config import SamplerConfig
from genneg.domain import get_domain
from genneg.evaluate import infraction_summary
from genneg.generate import generate
from genneg.labelling import label
from genneg.models import fit_base

RESULTS = Path(__file__).parent / "results"


def _override(cfg, args):
    net = dict(cfg.net)
    for key in ("width", "depth", "heads", "ff", "kernel"):
        if getattr(args, key) is not None:
            net[key] = getattr(args, key)
    data = dict(cfg.data) | ({"aux": args.aux} if args.aux is not None else {})
    base = replace(cfg.base, steps=args.steps, checkpoint_every=0,
                   **({"batch_size": args.batch} if args.batch else {}))  # fmt: skip
    return replace(cfg, net=net, data=data, base=base)


def _summary(domain, oracle, x0, cond) -> dict:
    samples = domain.decode(x0, cond)
    result = label(oracle, samples, cond)
    d = samples["defined"]
    depth = -np.where(d, samples["lowest_height"], np.inf).min(1) * 1000
    root_y = samples["features"][..., 1]
    jitter = np.abs(root_y[:, 2:] - 2 * root_y[:, 1:-1] + root_y[:, :-2])[d[:, 2:]].mean() * 1000
    out = {"infraction": infraction_summary(result), "median_worst_depth_mm": float(np.median(depth)),
           "pelvis_jitter_mm": float(jitter)}  # fmt: skip
    out.update({k: float(np.median(v)) for k, v in samples.items() if k.startswith("aux_")})
    return out


def _draw(model, domain, cond, n, steps, seed):
    with torch.no_grad():
        return generate(model, domain.sample_shape, n, SamplerConfig(steps=steps), cond, seed=seed)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--n", type=int, default=128, help="windows sampled per condition set")
    p.add_argument("--sampler-steps", type=int, default=18)
    p.add_argument("--tag", required=True)
    for key in ("width", "depth", "heads", "ff", "kernel"):
        p.add_argument(f"--{key}", type=int, default=None)
    p.add_argument("--aux", action=argparse.BooleanOptionalAction, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_domain("motion").presets()[args.preset]
    cfg = _override(cfg, args)
    domain = get_domain("motion", **cfg.data)
    domain.dataset("train")
    start = time.perf_counter()
    model = fit_base(domain, cfg, tempfile.mkdtemp(prefix="motion-base-")).eval()
    per_step = (time.perf_counter() - start) / args.steps
    params = sum(p.numel() for p in model.parameters())
    oracle = domain.oracle()
    out = {"tag": args.tag, "preset": args.preset, "steps": args.steps, "net": cfg.net, "data": cfg.data,
           "params": params, "seconds_per_step": per_step, "sampler_steps": args.sampler_steps}  # fmt: skip
    full = {"label": torch.arange(args.n) % len(domain.label_names),
            "defined": torch.ones(args.n, domain.frames, dtype=torch.bool)}  # fmt: skip
    masks = domain.conditions(args.n, "test", 0)
    for name, cond in (("full_length", full), ("test_masks", masks)):
        x0 = _draw(model, domain, cond, args.n, args.sampler_steps, seed=1)
        out[name] = _summary(domain, oracle, x0, cond)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"motion_base_{args.tag}.json").write_text(json.dumps(out, indent=2, default=float))
    print(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
