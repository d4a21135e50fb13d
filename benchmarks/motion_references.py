"""Reference rows for the motion domain's report: real held-out windows, noisy and grounded copies, a trained base.

    OMP_NUM_THREADS=1 python benchmarks/motion_references.py --preset tiny
    OMP_NUM_THREADS=1 python benchmarks/motion_references.py --preset cpu --run-dir runs/motion-cpu-base --n 256

Rows (each judged by the motion oracle and measured with ``MotionDomain.metrics``):

- real held-out windows (val and test): infraction rates with Wilson intervals and the margin of every window to
  every threshold (smallest and 5th percentile; positive = passes);
- the same windows with i.i.d. Gaussian noise of ``--noise`` in normalised channels, and that noise followed by the
  grounding post-process (``grounding.ground_samples``, per frame and per window): grounding removes penetration
  by construction and can add floating or change skating, so both show;
- with ``--run-dir`` (a ``genneg train`` or ``genneg run`` folder, or a pretrained model; a ``genneg train`` folder
  still training is read from the EMA weights of its ``base.state.pt``): the base on the two condition sets apart
  (``test:full``: full-length windows balanced over clips; ``test:masks``: the test windows' own masks), and the base
  + grounding on full-length windows.

Prints a table and writes ``benchmarks/results/motion_references_<preset>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, machine  # noqa: E402

from genneg.batch import concat  # noqa: E402
from genneg.checkpoint import load_state  # noqa: E402
from genneg.domain import get_domain  # noqa: E402
from genneg.evaluate import infraction_summary  # noqa: E402
from genneg.generate import generate  # noqa: E402

from genneg.domains.motion.grounding import ground_samples  # noqa: E402
from genneg.oracles.motion import DEFAULT_THRESHOLDS, motion_statistics  # noqa: E402

SHOWN = ("physdiff_penetrate_mm", "physdiff_float_mm", "physdiff_skate_mm", "gmd_skating_ratio",
         "worst_depth_median_mm", "worst_depth_p90_mm", "diversity_per_clip_m", "nearest_train_m")


def margins(samples: dict) -> dict[str, dict[str, float]]:
    """Each window's margin to each threshold (positive = passes): smallest and 5th percentile over windows."""
    t = DEFAULT_THRESHOLDS
    s = motion_statistics(samples["lowest_height"], samples["toes"], 20.0, samples["defined"], float_mm=t.float_mm)
    per = {"penetration_mm": t.penetration_mm - s["max_depth_mm"],
           "skating_ratio": t.skating_ratio - s["skating_ratio"],
           "flight_s": t.max_flight_s - s["longest_flight_s"]}  # fmt: skip
    return {k: {"min": float(v.min()), "p5": float(np.quantile(v, 0.05))} for k, v in per.items()}


def row(domain, name: str, samples: dict, cond: dict, with_margins: bool = False) -> dict:
    result = domain.oracle()(samples, cond)
    out = {"row": name, "n": int(len(result.valid)), "infraction": infraction_summary(result),
           "metrics": domain.metrics(samples, cond, result, "test")}  # fmt: skip
    if with_margins:
        out["margins"] = margins(samples)
    return out


def noisy(domain, x0: torch.Tensor, cond: dict, scale: float, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = x0 + scale * torch.randn(x0.shape, generator=g) * cond["defined"][..., None]
    return domain.decode(x, cond)


def load_base(run_dir: Path, device: str = "cpu"):
    """``(cfg, domain, base)`` of a folder ``genneg.stages.load_stage`` reads, or of a ``genneg train`` folder still
    training (the EMA weights of ``base.state.pt``)."""
    from genneg.checkpoint import read_json
    from genneg.config import RunConfig, config_from_dict
    from genneg.models import build_denoiser
    from genneg.stages import load_stage

    if (run_dir / "base.safetensors").is_file() or not (run_dir / "base.state.pt").is_file():
        cfg, domain, base, _ = load_stage(run_dir, "base", device=device)
        return cfg, domain, base
    cfg = config_from_dict(RunConfig, read_json(run_dir / "config.json"))
    domain = get_domain(cfg.domain, **cfg.data)
    state = load_state(run_dir / "base.state.pt")
    base = build_denoiser(domain, cfg)
    base.load_state_dict(state["ema"])
    return cfg, domain, base.eval().requires_grad_(False)


def base_rows(run_dir: Path, n: int, seed: int) -> list[dict]:
    cfg, domain, base = load_base(run_dir)
    rows = []
    for kind in ("full", "masks"):
        cond = domain.conditions(n, f"test:{kind}", seed)
        start = time.perf_counter()
        x0 = generate(base, domain.sample_shape, n, cfg.sampler, cond, seed=seed)
        samples = domain.decode(x0, cond)
        rows.append(row(domain, f"base, test:{kind}", samples, cond))
        rows[-1]["seconds"] = time.perf_counter() - start
        if kind == "full":
            for per in ("frame", "window"):
                rows.append(row(domain, f"base + grounding per {per}, test:full", ground_samples(samples, per), cond))
    return rows


def real_rows(domain, noise: list[float], seed: int) -> list[dict]:
    parts = [domain.dataset("val"), domain.dataset("test")]
    x0 = torch.cat([p[0] for p in parts])
    cond = concat([p[1] for p in parts])
    rows = [row(domain, "real held-out windows (val + test)", domain.decode(x0, cond), cond, with_margins=True)]
    for scale in noise:
        samples = noisy(domain, x0, cond, scale, seed)
        rows.append(row(domain, f"real + noise {scale}", samples, cond))
        for per in ("frame", "window"):
            rows.append(row(domain, f"real + noise {scale} + grounding per {per}", ground_samples(samples, per), cond))
    return rows


def table(rows: list[dict]) -> str:
    reasons = list(rows[0]["infraction"]["reasons"])
    head = ["row", "n", "invalid % [95 % Wilson]", *[f"{r} %" for r in reasons], *SHOWN]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        inf = r["infraction"]
        cells = [r["row"], str(r["n"]),
                 f"{100 * inf['total']['rate']:.1f} [{100 * inf['total']['lo']:.1f}, {100 * inf['total']['hi']:.1f}]",
                 *[f"{100 * inf['reasons'][k]['rate']:.1f}" for k in reasons],
                 *[f"{r['metrics'][k]['value'] + 0.0:.3g}" if k in r["metrics"] else "" for k in SHOWN]]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="the motion preset whose data to use (default: %(default)s)")
    p.add_argument("--run-dir", type=Path, default=None, help="a trained base to add rows for (optional)")
    p.add_argument("--n", type=int, default=128, help="base samples per condition set (default: %(default)s)")
    p.add_argument("--noise", type=float, nargs="*", default=[0.05, 0.1], help="noise scales (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    cfg = get_domain("motion").presets()[args.preset]
    domain = get_domain("motion", **cfg.data)
    rows = real_rows(domain, args.noise, args.seed)
    if args.run_dir is not None:
        rows += base_rows(args.run_dir, args.n, args.seed)
    out = {"preset": args.preset, "data": cfg.data, "run_dir": str(args.run_dir or ""), "seed": args.seed,
           "machine": machine(), "seconds": time.perf_counter() - start, "rows": rows}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / f"motion_references_{args.preset}.json").write_text(json.dumps(out, indent=2, default=float))
    print(table(rows))
    for r in rows:
        if "margins" in r:
            print(f"{r['row']}: margins " + ", ".join(f"{k} min {v['min']:.3g} (5th pct {v['p5']:.3g})"
                                                      for k, v in r["margins"].items()))
    print(f"{out['seconds']:.1f} s on {out['machine']['cpu']}")
    return out


if __name__ == "__main__":
    main()
