"""Sampler cost per 1,000 samples: base vs K stacked classifiers vs the distilled student, side by side.

Uses a finished `genneg run` folder (default: runs/final/seed0). Every configuration is timed in the same process,
interleaved over repeats, so the ratios hold on a noisy machine. Prints a table and writes JSON.

    python benchmarks/sampler_cost.py --run-dir runs/final/seed0 --n 10000 --repeats 3 --out benchmarks/sampler_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from genneg.generate import generate
from genneg.genneg import stack
from genneg.run import load_seed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/final/seed0")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/sampler_cost.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg, domain, base, classifiers, distilled = load_seed(args.run_dir)
    configs = {"base": base}
    for k in range(1, len(classifiers) + 1):
        configs[f"base + {k} classifier(s)"] = stack(base, classifiers[:k], cfg)
    configs["distilled"] = distilled
    times = {name: [] for name in configs}
    for r in range(args.repeats):
        for name, den in configs.items():
            t0 = time.perf_counter()
            generate(den, domain.sample_shape, args.n, cfg.sampler, domain.conditions(args.n, "test", r), seed=r)
            times[name].append(time.perf_counter() - t0)
    rows = {name: 1000 * min(t) / args.n for name, t in times.items()}
    print(f"{'sampler (' + str(cfg.sampler.steps) + ' Heun steps)':32s} {'s / 1,000':>10s} {'vs base':>8s}")
    for name, s in rows.items():
        print(f"{name:32s} {s:10.3f} {s / rows['base']:8.2f}")
    out = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s)",
           "n": args.n, "repeats": args.repeats, "seconds_per_1000": rows,
           "distilled_over_base": rows["distilled"] / rows["base"]}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
