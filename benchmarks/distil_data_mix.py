"""Distillation data: teacher samples only vs mixed with training data, measured on a finished run.

Reuses the base model and classifiers of one seed of a `genneg run`, distils the stacked teacher again with each
fraction of training data, and evaluates every student on the run's held-out data (infraction rate, NLL bound).
Prints a table and writes JSON.

    python benchmarks/distil_data_mix.py --run-dir runs/final/seed0 --fractions 0 0.5 \\
        --out benchmarks/distil_data_mix.json

Without --run-dir it uses the benchmarks' own toy model (``common.toy_seed``, built once if missing).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from common import toy_seed

from genneg.evaluate import EvalData, evaluate_denoiser
from genneg.genneg import RunContext, distil, stack


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default=None, help="a seed folder of a finished run (default: the benchmark's own)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.0, 0.5])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/distil_data_mix.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg, domain, base, classifiers, _, source = toy_seed(args.run_dir)
    teacher = stack(base, classifiers, cfg.genneg)
    data, oracle = EvalData(domain, cfg), domain.oracle()
    rows = {}
    for frac in args.fractions:
        c = replace(cfg, genneg=replace(cfg.genneg, distil_data_fraction=frac))
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            student = distil(teacher, base, domain, c, RunContext(tmp))
        m, _, _ = evaluate_denoiser(student, domain, c, data, oracle, seed=cfg.seed * 7919 + 1)
        rows[frac] = {"infraction": m["infraction"]["total"]["rate"], "nll": m["nll"]["mean"], "nll_se": m["nll"]["se"],
                      "seconds": time.perf_counter() - t0}
        print(f"data fraction {frac:.2f}: infraction {100 * rows[frac]['infraction']:.3f} %, "
              f"NLL {rows[frac]['nll']:.3f} ± {rows[frac]['nll_se']:.3f} nats", flush=True)
    Path(args.out).write_text(json.dumps({"run_dir": source, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
