"""One scene classifier vs one classifier per reason on the same round of traffic samples.

    OMP_NUM_THREADS=1 python benchmarks/traffic_per_reason.py --preset tiny --samples 2000 --steps 500 \
        --data-dir /tmp/traffic-cache --run-dir /tmp/per-reason

Trains the preset's base (or reads ``base.safetensors`` from ``--run-dir``), draws one round of labelled samples on
training networks, and fits round 1 twice on them, with the same streams: the single scene classifier and the
per-reason classifiers (collision with the pair head, off-road per vehicle). Both are calibrated, windowed and judged
on the same samples drawn on validation networks (``calibration_split = "val"``), with the same noise per σ bin.
Writes ``benchmarks/results/traffic_per_reason_<preset>.json``: per σ bin, the held-out BCE and AUC of each
classifier on the verdict and per reason (the scene classifier's AUC for a reason ranks that reason's infractions by
its logit), each σ window, and α per reason.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from genneg.classifier import auc
from genneg.domain import get_domain
from genneg.genneg import RunContext, run_round
from genneg.models import fit_base, load_denoiser
from genneg.rng import stream_seed

RESULTS = Path(__file__).parent / "results"


def _config(args):
    domain = get_domain("traffic", preset=args.preset, data_dir=args.data_dir)
    cfg = domain.presets()[args.preset]
    cfg = replace(cfg, data={**cfg.data, "data_dir": args.data_dir},
                  classifier=replace(cfg.classifier, steps=args.steps),
                  genneg=replace(cfg.genneg, samples_per_round=args.samples, calibration_split="val"))
    return get_domain("traffic", **cfg.data), cfg


def _base(domain, cfg, run_dir: Path):
    path = run_dir / "base.safetensors"
    if path.exists():
        return load_denoiser(domain, cfg, path).eval().requires_grad_(False)
    return fit_base(domain, cfg, run_dir).eval().requires_grad_(False)


def _fit(base, domain, cfg, run_dir: Path, per_reason: bool):
    """Round 1 in its own folder, reading the round's labelled draws from ``run_dir`` (drawn once)."""
    folder = run_dir / ("per_reason" if per_reason else "scene")
    folder.mkdir(exist_ok=True)
    for f in run_dir.glob("labelled_round1*.safetensors"):
        shutil.copy(f, folder / f.name)
    cfg = replace(cfg, genneg=replace(cfg.genneg, classifier_per_reason=per_reason))
    start = time.time()
    r = run_round(base, domain, cfg, domain.oracle(), 1, RunContext(folder, resume=True))
    for f in folder.glob("labelled_round1*.safetensors"):
        shutil.copy(f, run_dir / f.name)
    return r, time.time() - start


def _bins(report: dict) -> list[dict]:
    keep = ("sigma_lo", "sigma_hi", "bce", "reference_bce", "auc", "informative")
    return [{k: b[k] for k in keep} for b in report["bins"]]


def _scene_auc_per_reason(model, domain, cfg, held: dict, reasons: dict) -> dict:
    """The scene classifier's AUC for each reason's label, per σ bin, on the held-out samples and report noise."""
    g = torch.Generator().manual_seed(stream_seed(cfg.seed, "round1", "report"))
    x0, cond = held["x0"], held["cond"]
    edges = torch.linspace(np.log(cfg.genneg.classifier_sigma_min), np.log(cfg.genneg.classifier_sigma_max), 9)
    out = {k: [] for k in reasons}
    for lo, hi in zip(edges[:-1], edges[1:]):
        sigma = (lo + (hi - lo) * torch.rand(len(x0), generator=g)).exp()
        x = x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            logit = model.logit(x, sigma, cond)
        for k, flags in reasons.items():
            out[k].append(auc(logit, torch.as_tensor(~flags)))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--samples", type=int, default=2000, help="samples of the round (on training networks)")
    p.add_argument("--steps", type=int, default=500, help="classifier training steps")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--run-dir", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    domain, cfg = _config(args)
    base = _base(domain, cfg, run_dir)
    scene, t_scene = _fit(base, domain, cfg, run_dir, per_reason=False)
    reasons, t_reasons = _fit(base, domain, cfg, run_dir, per_reason=True)
    from genneg.draws import draw_labelled

    n = max(2, cfg.genneg.samples_per_round // 10)
    x0, cond, result = draw_labelled(base, domain, cfg, domain.oracle(), n, split="val",
                                     seed=stream_seed(cfg.seed, "round1", "val_samples"),
                                     cache=run_dir / "labelled_round1_val.safetensors", resume=True)
    keep = np.flatnonzero(result.defined)
    held = {"x0": x0[keep], "cond": {k: v[keep] for k, v in cond.items()}}
    out = {
        "preset": args.preset, "samples": args.samples, "classifier_steps": args.steps, "held_out": len(keep),
        "alpha": scene.alpha, "alpha_per_reason": {k: v.get("alpha") for k, v in reasons.report["reasons"].items()},
        "held_out_rates": {k: float(v[keep].mean()) for k, v in result.reasons.items()},
        "seconds": {"scene": t_scene, "per_reason": t_reasons},
        "scene": {"window": scene.report["informative_sigma_max"], "bins": _bins(scene.report),
                  "auc_per_reason": _scene_auc_per_reason(scene.classifier, domain, cfg, held,
                                                          {k: v[keep] for k, v in result.reasons.items()})},
        "per_reason_combined": {"bins": _bins(reasons.report)},
        "per_reason": {k: {"window": v["informative_sigma_max"], "elementwise": v["elementwise"],
                           "temperatures": v.get("temperatures"), "bins": _bins(v)}
                       for k, v in reasons.report["reasons"].items() if "bins" in v},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"traffic_per_reason_{args.preset}.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
