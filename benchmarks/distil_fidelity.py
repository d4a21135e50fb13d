"""How much of the guidance a distilled student learned, per σ band, on a run's own distillation targets.

    OMP_NUM_THREADS=1 python benchmarks/distil_fidelity.py --run-dir runs/traffic-genneg
    OMP_NUM_THREADS=1 python benchmarks/distil_fidelity.py --run-dir runs/traffic-genneg --train 2e-4:3000 1e-3:3000

A student S is trained to match the guided teacher D_g = D + σ²·∇ log C (the base D and its classifiers) on noised
teacher samples. On rows of the run's cached distillation pool (``distilled.targets.safetensors``, written with
``genneg.distil_pool``), this prints per σ band the root-mean-square of the guidance itself (‖D_g − D‖), of the
student's error (‖S − D_g‖) and how far the student moved from the base (‖S − D‖), over the defined entries, and

    learned = 1 − ‖S − D_g‖² / ‖D − D_g‖²   (1: the student is the teacher; 0: no closer than the base; < 0: worse)

A distilled model that samples like its base while its teacher does not shows here as learned ≈ 0 in the bands
where the classifiers guide. ``--train LR:STEPS ...`` also distils new students from the run's base on the same
cached teacher samples and pool (the project's own ``distil``, the run's config with that learning rate and number
of steps) and evaluates each on the run's evaluation stream (the conditions and noise of the report's rows, so the
infraction rates are paired with the run's base and student); ``LR:STEPS:SIGMA`` trains on the pool's rows with
σ ≥ SIGMA only. ``--handoff S ...`` also evaluates every student used only above each σ S with the base below
(``genneg.diffusion.SigmaHandoff``), with its NLL bound paired with the base's on the report's held-out points.
Writes ``benchmarks/results/distil_fidelity_<run folder name>.json``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from common import eval_stream_metrics, table, write
from genneg.batch import take, to_device
from genneg.checkpoint import load_weights
from genneg.cli.resolve import sampler_arg, with_sampler
from genneg.context import RunContext
from genneg.diffusion import SigmaHandoff, masked_sum
from genneg.evaluate import EvalData, nll_points
from genneg.genneg import distil, pool_objective, stack, teacher_samples
from genneg.likelihood import mean_and_stderr
from genneg.rng import stream_seed
from genneg.run import load_seed
from genneg.training import streamed, train

BANDS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, float("inf")]
CACHED = ("distilled.targets.safetensors", "distilled.teacher_samples.safetensors")


def fidelity(base, student, pool: dict, cond, rows: int, batch_size: int = 256) -> list[dict]:
    """Per σ band: rms guidance, student error and student move over the defined entries of the first ``rows``."""
    n = min(rows, pool["x"].shape[0])
    edges = torch.tensor(BANDS[1:-1], dtype=torch.float64)
    sums = {k: torch.zeros(len(BANDS) - 1, dtype=torch.float64) for k in ("guide", "error", "moved", "count")}
    with torch.no_grad():
        for s in range(0, n, batch_size):
            sl = slice(s, min(s + batch_size, n))
            x, sigma, target = pool["x"][sl], pool["sigma"][sl], pool["target"][sl]
            c = to_device(take(cond, pool["index"][sl].numpy()), x.device)
            d, st = base(x, sigma, c), student(x, sigma, c)
            band = torch.bucketize(sigma.double(), edges)
            for key, err in (("guide", target - d), ("error", st - target), ("moved", st - d)):
                total, count = masked_sum(err ** 2, c)
                sums[key].index_add_(0, band, total.double())
                if key == "guide":
                    sums["count"].index_add_(0, band, count.double())
    out = []
    for b in range(len(BANDS) - 1):
        cnt = sums["count"][b].item()
        if cnt == 0:
            continue
        g, e, m = (sums[k][b].item() / cnt for k in ("guide", "error", "moved"))
        out.append({"band": [BANDS[b], BANDS[b + 1]], "entries": cnt, "rms_guidance": g ** 0.5,
                    "rms_student_error": e ** 0.5, "rms_student_moved": m ** 0.5,
                    "learned": 1 - e / g if g > 0 else float("nan")})
    return out


def print_fidelity(title: str, bands: list[dict]) -> None:
    table(title, ["σ band", "‖D_g − D‖ rms", "‖S − D_g‖ rms", "‖S − D‖ rms", "learned"],
          [[f"[{b['band'][0]:g}, {b['band'][1]:g})", b["rms_guidance"], b["rms_student_error"],
            b["rms_student_moved"], b["learned"]] for b in bands])


def parse_budget(item: str) -> tuple[float, int, float]:
    parts = item.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        return float(parts[0]), int(parts[1]), float(parts[2]) if len(parts) == 3 else 0.0
    except ValueError:
        raise SystemExit(f"error: --train takes LR:STEPS[:SIGMA] (e.g. 1e-3:3000:0.3), got {item!r}") from None


def distil_above(base, pool: dict, cond, domain, cfg, sigma_min: float, out_dir: str):
    """A student distilled from ``base`` on the pool's rows with σ ≥ ``sigma_min`` only (the objective of
    ``genneg.genneg.distil`` on a cached pool)."""
    keep = pool["sigma"] >= sigma_min
    rows = {k: v[keep] for k, v in pool.items()}
    student = copy.deepcopy(base).requires_grad_(True)
    res = train(student, pool_objective(cond), rows, streamed(cfg.distil, cfg.seed, "distilled"), run_dir=out_dir,
                name="distilled", dropout=False)
    return res.model.eval().requires_grad_(False)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="a finished genneg run folder distilled with a pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", type=int, default=2048, help="pool rows to measure the fidelity on (the first ones)")
    p.add_argument("--train", nargs="*", default=[], metavar="LR:STEPS[:SIGMA]",
                   help="distil new students with these (on the pool's rows with σ >= SIGMA)")
    p.add_argument("--handoff", nargs="*", type=float, default=[], metavar="S",
                   help="also evaluate every student above σ S with the base below, bound paired with the base's")
    p.add_argument("--sampler", type=sampler_arg, default=None, metavar="KIND[:STEPS]",
                   help="sample the evaluations with this sampler (default: the run's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    budgets = [parse_budget(b) for b in args.train]
    seed_dir = Path(args.run_dir) / f"seed{args.seed}"
    missing = [name for name in CACHED if not (seed_dir / name).is_file()]
    if missing:
        raise SystemExit(f"error: {seed_dir} has no {', '.join(missing)}; this benchmark reads the cached pool of a "
                         "run distilled with genneg.distil_pool > 0")
    cfg, domain, base, classifiers, student = load_seed(seed_dir)
    cfg = with_sampler(cfg, args.sampler)
    if student is None:
        raise SystemExit(f"error: {seed_dir} holds no distilled.safetensors; the run has not finished distilling")
    pool, _ = load_weights(seed_dir / CACHED[0])
    # the teacher's samples are cached by the run; their conditions are redrawn from the run's own stream
    _, cond = teacher_samples(None, domain, cfg, RunContext(seed_dir, resume=True))
    results = {"run's student": {"lr": cfg.distil.lr, "steps": cfg.distil.steps,
                                 "bands": fidelity(base, student, pool, cond, args.rows)}}
    print_fidelity(f"the run's student ({args.run_dir} seed {args.seed}, {args.rows} pool rows)",
                   results["run's student"]["bands"])
    if budgets or args.handoff:
        data, oracle = EvalData(domain, cfg), domain.oracle()
        teacher = stack(base, classifiers, cfg.genneg)
        students = {"run's student": student}
        for name, model in (("base", base), ("run's student", student)):
            results.setdefault(name, {})["eval"] = _evaluate(model, domain, cfg, data, oracle)
        for lr, steps, sigma_min in budgets:
            t0 = time.perf_counter()
            run_cfg = replace(cfg, distil=replace(cfg.distil, lr=lr, steps=steps))
            with tempfile.TemporaryDirectory() as tmp:
                if sigma_min:
                    model = distil_above(base, pool, cond, domain, run_cfg, sigma_min, tmp)
                else:
                    for name in CACHED:
                        shutil.copy(seed_dir / name, Path(tmp) / name)
                    model = distil(teacher, base, domain, run_cfg, RunContext(tmp, resume=True))
            seconds = time.perf_counter() - t0
            name = f"lr {lr:g}, {steps} steps" + (f", σ ≥ {sigma_min:g}" if sigma_min else "")
            students[name] = model
            results[name] = {"lr": lr, "steps": steps, "sigma_min": sigma_min, "train_seconds": seconds,
                             "bands": fidelity(base, model, pool, cond, args.rows),
                             "eval": _evaluate(model, domain, cfg, data, oracle)}
            print_fidelity(f"student {name} ({seconds / 60:.1f} min)", results[name]["bands"])
        if args.handoff:
            seed = stream_seed(cfg.seed, "eval")  # the report's held-out points and noise
            base_nll = nll_points(base, cfg, data, seed)
            for name, model in list(students.items()):
                for s in args.handoff:
                    handoff = SigmaHandoff(base, model, s)
                    diff = nll_points(handoff, cfg, data, seed) - base_nll
                    mean, se = mean_and_stderr(diff)
                    results[f"{name}, above σ {s:g}"] = {"handoff": s, "nll_diff": {"mean": mean, "se": se},
                                                          "eval": _evaluate(handoff, domain, cfg, data, oracle)}
        rows = []
        for name, r in results.items():
            e = r["eval"]
            reasons = " / ".join(f"{100 * v:.1f}" for v in e["reasons"].values())
            below = [b["learned"] for b in r.get("bands", []) if b["band"][1] <= 1.0]
            nll = f"{r['nll_diff']['mean']:+.2f} ± {r['nll_diff']['se']:.2f}" if "nll_diff" in r else ""
            rows.append([name, f"{100 * e['rate']:.1f} [{100 * e['lo']:.1f}, {100 * e['hi']:.1f}]", reasons,
                         f"{min(below):.2f}–{max(below):.2f}" if below else "", nll])
        table(f"students of {args.run_dir} on its evaluation stream", ["model", "invalid %", "per reason %",
                                                                       "learned, σ < 1", "ΔNLL (paired)"], rows)
    write(f"distil_fidelity_{Path(args.run_dir).name}", {"run_dir": args.run_dir, "rows": args.rows,
                                                          "sampler": f"{cfg.sampler.kind}:{cfg.sampler.steps}",
                                                          "results": results}, args.out)


def _evaluate(model, domain, cfg, data, oracle) -> dict:
    inf = eval_stream_metrics(model, domain, cfg, data, oracle)["infraction"]
    return {"rate": inf["total"]["rate"], "lo": inf["total"]["lo"], "hi": inf["total"]["hi"],
            "reasons": {k: v["rate"] for k, v in inf["reasons"].items()}}


if __name__ == "__main__":
    main()
