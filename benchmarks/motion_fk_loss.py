"""Does a forward-kinematics loss at small σ help the motion base? Trains the same base with and without it.

    OMP_NUM_THREADS=1 python benchmarks/motion_fk_loss.py --steps 2000 --weight 10 --sigma-max 1.0

The loss is EDM's weighted denoising loss plus ``MotionDomain.denoised_loss``: ``weight`` × the mean squared joint
distance in metres between the joints posed from the denoised window and from the data (``MotionDomain.fk_loss``,
MDM's position loss), on the samples whose σ is below ``--sigma-max``. Both runs share data, initial weights,
batches and noise; the samples are judged as in ``motion_base.py``. Results: ``benchmarks/results/motion_fk_loss_<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from genneg import rng
from genneg.diffusion import LogNormalSigma, append_dims, masked_sum
from genneg.config import SamplerConfig
from genneg.domain import get_domain
from genneg.generate import generate
from genneg.models import build_denoiser, data_dict
from genneg.training import train

from motion_base import _summary  # noqa: E402  (benchmarks/ is the script's folder)

RESULTS = Path(__file__).parent / "results"


def fk_objective(domain):
    """loss_fn(model, batch, gen) for genneg.training.train: EDM loss + the domain's ``denoised_loss``."""

    def loss(model, batch, gen):
        x0, cond = batch["x0"], batch["cond"]
        sigma = LogNormalSigma()(x0.shape[0], device=x0.device, generator=gen)
        x = x0 + append_dims(sigma, x0.ndim) * rng.randn(x0.shape, gen, device=x0.device)
        denoised = model(x, sigma, cond)
        total, count = masked_sum((denoised - x0) ** 2, cond)
        return model.loss_weight(sigma) * total / count + domain.denoised_loss(denoised, x0, sigma, cond)

    return loss


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--weight", type=float, default=10.0)
    p.add_argument("--sigma-max", type=float, default=1.0)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--tag", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = get_domain("motion").presets()["demo"]
    cfg = replace(cfg, base=replace(cfg.base, steps=args.steps, checkpoint_every=0))
    x0, cond = get_domain("motion", **cfg.data).dataset("train")
    out = {"tag": args.tag, "steps": args.steps, "weight": args.weight, "sigma_max": args.sigma_max}
    for name, weight in (("edm", 0.0), ("edm+fk", args.weight)):
        domain = get_domain("motion", **cfg.data, fk_weight=weight, fk_sigma_max=args.sigma_max)
        oracle = domain.oracle()
        full = {"label": torch.arange(args.n) % len(domain.label_names),
                "defined": torch.ones(args.n, domain.frames, dtype=torch.bool)}  # fmt: skip
        model = build_denoiser(domain, cfg)
        start = time.perf_counter()
        res = train(model, fk_objective(domain), data_dict(x0, cond), cfg.base,
                    run_dir=tempfile.mkdtemp(prefix="motion-fk-"), name="base")  # fmt: skip
        ema = res.model.eval()
        with torch.no_grad():
            samples = generate(ema, domain.sample_shape, args.n, SamplerConfig(steps=18), full, seed=1)
        out[name] = {"seconds_per_step": (time.perf_counter() - start) / args.steps,
                     **_summary(domain, oracle, samples, full)}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"motion_fk_loss_{args.tag}.json").write_text(json.dumps(out, indent=2, default=float))
    print(json.dumps(out, indent=2, default=float))
    return out


if __name__ == "__main__":
    main()
