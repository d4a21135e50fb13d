"""Infraction rates of one trained model under several sampler settings, on the validation split.

    OMP_NUM_THREADS=1 python benchmarks/sampler_settings.py --run-dir pretrained/motion-cpu --split val

A model's sampler (Heun's step count, EDM's stochastic "churn") is chosen once per preset; this measures what the
choice costs in invalid samples and seconds, on the conditions and noise of the run's evaluation streams of a split
that no report uses (``val``: choosing the sampler on ``test`` would tune to the figure it reports). Every setting
draws from the same noise. Writes ``benchmarks/results/sampler_settings_<tag>.json``.
"""

from __future__ import annotations

from dataclasses import replace

from common import parser, setup, table, write

from genneg.cli.resolve import sampler_arg, sampler_tag, with_sampler
from genneg.evaluate import EvalData, evaluate_denoiser
from genneg.stages import load_stage


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", required=True, help="a pretrained model folder, or a run folder")
    p.add_argument("--stage", default=None)
    p.add_argument("--split", default="val")
    p.add_argument("--n", type=int, default=256, help="samples per setting")
    p.add_argument("--settings", nargs="+", metavar="KIND:STEPS",
                   default=["heun:12", "heun:18", "heun:32", "stochastic:18", "stochastic:32"])
    p.add_argument("--tag", default=None)
    args = p.parse_args(argv)
    setup(args.threads)
    cfg, domain, denoiser, _ = load_stage(args.run_dir, args.stage)
    cfg = replace(cfg, eval=replace(cfg.eval, num_samples=args.n))
    data = EvalData(domain, cfg, split=args.split)
    oracle = domain.oracle()
    rows = []
    for s in args.settings:
        run_cfg = with_sampler(cfg, sampler_arg(s))
        metrics, _, _ = evaluate_denoiser(denoiser, domain, run_cfg, data, oracle, with_nll=False)  # the eval stream
        rows.append({"sampler": sampler_tag(run_cfg), **metrics})
        inf = metrics["infraction"]["total"]
        print(f"{rows[-1]['sampler']:>14}: {100 * inf['rate']:.1f} % [{100 * inf['lo']:.1f}, {100 * inf['hi']:.1f}] "
              f"invalid, {metrics['seconds_per_1000']:.0f} s / 1000", flush=True)
    reasons = list(rows[0]["infraction"]["reasons"])
    table(f"{args.run_dir} on {args.split}, {args.n} samples a setting",
          ["sampler", "invalid %", *[f"{r} %" for r in reasons], "s / 1000"],
          [[r["sampler"], f"{100 * r['infraction']['total']['rate']:.1f}",
            *[f"{100 * r['infraction']['reasons'][k]['rate']:.1f}" for k in reasons], f"{r['seconds_per_1000']:.0f}"]
           for r in rows])
    tag = args.tag or f"{cfg.domain}-{cfg.preset}"
    out = {"run_dir": str(args.run_dir), "stage": args.stage, "split": args.split, "n": args.n, "rows": rows}
    write(f"sampler_settings_{tag}", out, args.out)
    return out


if __name__ == "__main__":
    main()
