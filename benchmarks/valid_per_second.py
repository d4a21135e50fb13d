"""Valid samples per second: the distilled Gen-neG student against rejection sampling of the base model (and the
stacked teacher the student was distilled from), side by side.

Each method draws n raw samples, decodes them and asks the oracle; its throughput is the valid samples it delivers
per second of that whole pipeline. Rejection sampling delivers only valid samples (exactly the target); the student
delivers all of its samples, a fraction of them invalid, at one network evaluation per step.

    python benchmarks/valid_per_second.py
    python benchmarks/valid_per_second.py --run-dir runs/final/seed0 --n 20000
"""

from __future__ import annotations

import argparse

from common import measured, setup, table, toy_seed, write

from genneg.generate import generate
from genneg.genneg import stack
from genneg.oracle import label


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default=None, help="a seed folder of a finished run (default: the benchmark's own)")
    p.add_argument("--n", type=int, default=4000, help="raw samples per method and repeat")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    setup(args.threads)
    cfg, domain, base, classifiers, distilled, source = toy_seed(args.run_dir)
    oracle = domain.oracle()
    methods = {  # name -> (denoiser, keeps only valid samples)
        "rejection sampling (base + oracle)": (base, True),
        f"stacked teacher ({len(classifiers)} classifiers)": (stack(base, classifiers, cfg), False),
        "Gen-neG distilled": (distilled, False),
    }
    best = {}
    for r in range(args.repeats):
        order = list(methods.items()) if r % 2 == 0 else list(methods.items())[::-1]  # no favoured position
        for name, (den, reject) in order:
            cond = domain.conditions(args.n, "test", r)
            with measured() as m:
                x0 = generate(den, domain.sample_shape, args.n, cfg.sampler, cond, seed=100 + r)
                result = label(oracle, domain.decode(x0, cond), cond)
            valid = int(result.valid.sum())
            delivered = valid if reject else args.n
            row = {"seconds": m.seconds, "valid": valid, "delivered": delivered, "peak_mib": m.mib,
                   "valid_per_second": valid / m.seconds, "delivered_per_second": delivered / m.seconds,
                   "invalid_fraction_delivered": 0.0 if reject else 1 - valid / args.n,
                   "raw_per_valid": args.n / max(valid, 1)}
            if name not in best or row["valid_per_second"] > best[name]["valid_per_second"]:
                best[name] = row
    ref = best["rejection sampling (base + oracle)"]["valid_per_second"]
    rows = [[name, b["valid_per_second"], b["valid_per_second"] / ref, 100 * b["invalid_fraction_delivered"],
             b["raw_per_valid"], f'{b["peak_mib"]:.1f}'] for name, b in best.items()]
    table(f"Valid samples per second (n = {args.n} raw samples, {cfg.sampler.steps} steps, sampling + decode + "
          f"oracle, best of {args.repeats}; model: {source})",
          ["method", "valid / s", "vs rejection", "% invalid delivered", "raw per valid", "peak MiB"], rows)
    write("valid_per_second", {"source": source, "n": args.n, "repeats": args.repeats, "methods": best}, args.out)


if __name__ == "__main__":
    main()
