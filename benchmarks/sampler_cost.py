"""Sampler cost per 1,000 samples: the base model, the base guided by K stacked classifiers, the distilled student.

Same sampler and steps for all; every configuration is timed in this process, interleaved over repeats in
alternating order: the cost is the median repeat, the ratio to the base the median of the per-repeat ratios, so it
holds on a noisy machine. Target: distilled / base <= 1.05 (the student is the same network as the base). Peak
memory is the growth of resident memory while a configuration samples.

    python benchmarks/sampler_cost.py                       # the benchmarks' toy model (built once if missing)
    python benchmarks/sampler_cost.py --run-dir runs/final/seed0 --n 10000
"""

from __future__ import annotations

import statistics

from common import alternating, measured, setup, table, toy_parser, toy_seed, write

from genneg.generate import generate
from genneg.genneg import stack

TARGET = 1.05


def main():
    p = toy_parser(__doc__, n=1000, repeats=16)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    setup(args.threads)
    cfg, domain, base, classifiers, distilled, source = toy_seed(args.run_dir)
    configs = {"base": base.to(args.device)}
    for k in range(1, len(classifiers) + 1):
        configs[f"base + {k} classifier(s)"] = stack(base, [c.to(args.device) for c in classifiers[:k]], cfg.genneg)
    configs["distilled"] = distilled.to(args.device)
    seconds = {name: [] for name in configs}
    mib = {name: 0.0 for name in configs}
    for r in range(args.repeats):
        for name, den in alternating(configs, r):
            with measured() as m:
                generate(den, domain.sample_shape, args.n, cfg.sampler, domain.conditions(args.n, "test", r), seed=r,
                         device=args.device)
            seconds[name].append(m.seconds)
            mib[name] = max(mib[name], m.mib)
    per_1000 = {name: 1000 * statistics.median(t) / args.n for name, t in seconds.items()}
    # each repeat times every model within seconds of the base, so per-repeat ratios share the machine's load;
    # their median is the robust ratio (the fastest repeats of two models may fall in different quiet spells)
    vs_base = {name: statistics.median(a / b for a, b in zip(t, seconds["base"])) for name, t in seconds.items()}
    ratio = vs_base["distilled"]
    rows = [[name, s, vs_base[name], f"{mib[name]:.1f}"] for name, s in per_1000.items()]
    table(f"Sampler cost ({cfg.sampler.steps} {cfg.sampler.kind} steps, {args.n} samples x {args.repeats} repeats; "
          f"model: {source})", ["model", "s / 1,000 samples (median)", "vs base (median ratio)", "peak MiB"], rows)
    print(f"distilled / base = {ratio:.3f} (target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")
    write("sampler_cost", {"source": source, "n": args.n, "repeats": args.repeats, "device": args.device,
                           "sampler": {"kind": cfg.sampler.kind, "steps": cfg.sampler.steps},
                           "seconds_per_1000": per_1000, "vs_base_median": vs_base, "all_seconds": seconds,
                           "peak_mib": mib,
                           "distilled_over_base": ratio, "target": TARGET, "target_met": ratio <= TARGET}, args.out)


if __name__ == "__main__":
    main()
