"""Distillation data: teacher samples only vs mixed with training data, measured on a finished run.

Reuses the base model and classifiers of one seed of a `genneg run`, distils the stacked teacher again with each
fraction of training data, and evaluates every student on the run's held-out data (infraction rate, NLL bound).
Prints a table and writes JSON.

    python benchmarks/distil_data_mix.py --run-dir runs/final/seed0 --fractions 0 0.5 --out benchmarks/distil_data_mix.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from genneg.checkpoint import read_json
from genneg.config import RunConfig, config_from_dict
from genneg.domain import get_domain
from genneg.evaluate import EvalData, evaluate_denoiser
from genneg.genneg import distil, load_classifier, stack
from genneg.models import load_denoiser


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/final/seed0")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/distil_data_mix.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    seed_dir = Path(args.run_dir)
    cfg = config_from_dict(RunConfig, read_json(seed_dir.parent / "config.json"))
    cfg = replace(cfg, seed=int(seed_dir.name.removeprefix("seed")))
    domain = get_domain(cfg.domain, **cfg.data)
    base = load_denoiser(domain, cfg, seed_dir / "base.safetensors")
    classifiers = [load_classifier(domain, cfg, f) for f in sorted(seed_dir.glob("classifier[0-9]*.safetensors"))]
    teacher = stack(base, classifiers, cfg)
    data, oracle = EvalData(domain, cfg), domain.oracle()
    rows = {}
    for frac in args.fractions:
        c = replace(cfg, genneg=replace(cfg.genneg, distil_data_fraction=frac))
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            student = distil(teacher, base, domain, c, run_dir=tmp)
        m, _, _ = evaluate_denoiser(student, domain, c, data, oracle, seed=cfg.seed * 7919 + 1)
        rows[frac] = {"infraction": m["infraction"]["total"]["rate"], "nll": m["nll"]["mean"], "nll_se": m["nll"]["se"],
                      "seconds": time.perf_counter() - t0}
        print(f"data fraction {frac:.2f}: infraction {100 * rows[frac]['infraction']:.3f} %, "
              f"NLL {rows[frac]['nll']:.3f} ± {rows[frac]['nll_se']:.3f} nats", flush=True)
    Path(args.out).write_text(json.dumps({"run_dir": str(seed_dir), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
