"""The guidance weight w of a finished run's last round: infraction, NLL bound and the domain's measures at each w.

    OMP_NUM_THREADS=1 python benchmarks/guidance_weight.py --run-dir runs/motion-genneg --weights 1 2 4 8

Gen-neG's theory sets w = 1: the base guided by classifiers that are the posterior P(valid | x_σ) under the model's
own prior is the base restricted to the valid set. A classifier that is informative but weak (it learned part of
what decides validity) moves the samples less than that; w > 1 multiplies its gradient, and with it both its signal
and its errors, so a larger w is a trade that the NLL bound and the domain's realism measures must show
(docs/method.md). Each w is evaluated the way ``genneg run`` evaluates its stages, on the run's ``("eval",)`` stream
(the same conditions, sampler noise and held-out points as the run's base row), so every row is paired with the
base, and the NLL difference is per point.

``--sigma-max REASON=SIGMA`` (repeatable; ``all`` for a single classifier) first moves the upper edge of that
classifier's σ window in every round, to measure what guiding where the window rule stopped would do, without
training anything again.

Writes ``benchmarks/results/guidance_weight_<run folder name>.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import eval_stream_metrics, table, write
from genneg.evaluate import EvalData, nll_points
from genneg.genneg import stack
from genneg.likelihood import mean_and_stderr
from genneg.rng import stream_seed
from genneg.run import load_seed


def evaluate(model, domain, cfg, data: EvalData, oracle) -> tuple[dict, torch.Tensor]:
    metrics = eval_stream_metrics(model, domain, cfg, data, oracle)
    nll = nll_points(model, cfg, data, stream_seed(cfg.seed, "eval")).double()
    return metrics, nll


def set_windows(classifiers: list, edges: dict[str, float]) -> list[dict]:
    """Moves the σ window's upper edge of the named reasons' classifiers (``all``: a single classifier)."""
    changes = []
    for k, clf in enumerate(classifiers, 1):
        per_reason = hasattr(clf, "member")  # genneg.reasons.ReasonClassifiers
        for reason, edge in edges.items():
            if per_reason != (reason != "all") or (per_reason and reason not in clf.reasons):
                have = list(clf.reasons) if per_reason else ["all"]
                raise SystemExit(f"error: classifier {k} has no member {reason!r}; it has {have}")
            model = clf.member(reason) if per_reason else clf
            changes.append({"classifier": k, "reason": reason, "sigma_max_before": float(model.sigma_max_guidance),
                            "sigma_max": edge})
            model.sigma_max_guidance.fill_(edge)
    return changes


def parse_edges(items: list[str]) -> dict[str, float]:
    edges = {}
    for item in items:
        reason, _, value = item.partition("=")
        try:
            edges[reason] = float(value)
        except ValueError:
            raise SystemExit(f"error: --sigma-max takes REASON=SIGMA, got {item!r}") from None
        if not edges[reason] >= 0:
            raise SystemExit(f"error: --sigma-max {item!r}: σ must be >= 0")
    return edges


def row(name: str, metrics: dict, nll: torch.Tensor, base_nll: torch.Tensor | None) -> list:
    inf = metrics["infraction"]
    reasons = " / ".join(f"{100 * r['rate']:.1f}" for r in inf["reasons"].values())
    mean, se = mean_and_stderr(nll)
    diff = "" if base_nll is None else "{:+.3f} ± {:.3f}".format(*mean_and_stderr(nll - base_nll))
    t = inf["total"]
    return [name, f"{100 * t['rate']:.1f} [{100 * t['lo']:.1f}, {100 * t['hi']:.1f}]", reasons,
            f"{mean:.2f} ± {se:.2f}", diff, f"{metrics['seconds_per_1000']:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="a finished `genneg run` folder (one with classifier1)")
    ap.add_argument("--seed", type=int, default=None, help="its seed folder (default: the run's first)")
    ap.add_argument("--weights", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    ap.add_argument("--num-samples", type=int, default=None, help="evaluation samples (default: the run's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sigma-max", action="append", default=[], metavar="REASON=SIGMA",
                    help="move the upper edge of a classifier's σ window (all: a single classifier)")
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/guidance_weight_<run>.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    seeds = sorted(p for p in run_dir.glob("seed*") if p.is_dir())
    if not seeds:
        raise SystemExit(f"error: {run_dir} holds no seed<S>/ folder; is it a `genneg run` folder?")
    seed_dir = run_dir / f"seed{args.seed}" if args.seed is not None else seeds[0]
    cfg, domain, base, classifiers, _ = load_seed(seed_dir)
    if not classifiers:
        raise SystemExit(f"error: {seed_dir} has no classifier yet (classifier1.safetensors); nothing to weigh")
    windows = set_windows(classifiers, parse_edges(args.sigma_max))
    for w in windows:
        print(f"classifier {w['classifier']} {w['reason']}: σ window up to {w['sigma_max_before']:.3f} -> "
              f"{w['sigma_max']:.3f}")
    if args.num_samples:
        from dataclasses import replace

        cfg = replace(cfg, eval=replace(cfg.eval, num_samples=args.num_samples))
    if any(w <= 0 for w in args.weights):
        raise SystemExit(f"error: weights must be > 0, got {args.weights}")
    oracle, data = domain.oracle(), EvalData(domain, cfg)
    base_metrics, base_nll = evaluate(base, domain, cfg, data, oracle)
    base_metrics["nll"] = dict(zip(("mean", "se"), mean_and_stderr(base_nll)))
    rows, records = [row("base", base_metrics, base_nll, None)], {"base": base_metrics}
    for w in args.weights:
        metrics, nll = evaluate(stack(base, classifiers, cfg.genneg, weight=w), domain, cfg, data, oracle)
        metrics["nll"] = dict(zip(("mean", "se"), mean_and_stderr(nll)))
        metrics["nll"]["diff_base"] = dict(zip(("mean", "se"), mean_and_stderr(nll - base_nll)))
        rows.append(row(f"w = {w:g}", metrics, nll, base_nll))
        records[f"w={w:g}"] = metrics
        print(rows[-1], flush=True)
    names = " / ".join(base_metrics["infraction"]["reasons"])
    table(f"{run_dir.name}: base + {len(classifiers)} classifier(s) at guidance weight w ({cfg.eval.num_samples} "
          f"samples, test conditions)", ["model", "invalid %", f"{names} %", "NLL", "Δ NLL (paired)", "s / 1000"],
          rows)
    write(f"guidance_weight_{run_dir.name}", {"run_dir": str(run_dir), "seed_dir": str(seed_dir),
                                              "classifiers": len(classifiers), "num_samples": cfg.eval.num_samples,
                                              "windows": windows, "results": records}, args.out)


if __name__ == "__main__":
    main()
