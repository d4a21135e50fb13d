"""What a traffic model's collisions are: duplicates (two vehicles on one spot) or near misses, and when they form.

    OMP_NUM_THREADS=1 python benchmarks/traffic_duplicates.py --run-dir pretrained/traffic-cpu --n 256

Draws ``--n`` scenes on the test split's conditions with the model's own sampler (Heun, its steps), and reports:

- colliding pairs of boxes (ego included): per scene, the overlap as a share of the smaller box, centre distance;
- the same scenes' data: the gap between the closest boxes (data vehicles never overlap);
- along the sampler, for pairs of generated vehicles whose final centres are < 2.5 m apart ("close") and pairs
  6-15 m apart ("far"), the median distance between the two vehicles' noisy positions and between their denoised
  predictions at each σ: where a close pair's predictions stop separating is where the duplicate is decided.

Writes ``benchmarks/results/traffic_duplicates_<model folder name>.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from shapely.geometry import Polygon

from common import table, write
from genneg.diffusion import karras_sigmas
from genneg.domains.traffic.features import POSITION_SCALE
from genneg.oracles.traffic import box_corners, pairwise_overlap_sat
from genneg.sampling import sample
from genneg.stages import load_stage

CLOSE_M, FAR_M = 2.5, (6.0, 15.0)


def pair_stats(boxes: np.ndarray, defined: np.ndarray) -> tuple[list[tuple[float, float]], list[float]]:
    """Pairs the collision oracle flags (``pairwise_overlap_sat``, its tolerance) as (overlap share of the smaller
    box, centre distance), and every other pair's gap (m)."""
    hit = pairwise_overlap_sat(boxes, defined)  # [S, N, N]
    corners = box_corners(boxes)
    hits, gaps = [], []
    for s in range(len(boxes)):
        idx = np.flatnonzero(defined[s])
        polys = [Polygon(corners[s, i]) for i in idx]
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                if hit[s, i, j]:
                    inter = polys[a].intersection(polys[b]).area
                    hits.append((inter / min(polys[a].area, polys[b].area),
                                 float(np.hypot(*(boxes[s, i, :2] - boxes[s, j, :2])))))
                else:
                    gaps.append(polys[a].distance(polys[b]))
    return hits, gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="a traffic model folder or run (its base or --stage)")
    ap.add_argument("--stage", default=None)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, domain, model, _ = load_stage(args.run_dir, args.stage)
    if cfg.domain != "traffic":
        raise SystemExit(f"error: {args.run_dir} is a {cfg.domain!r} model; this benchmark measures traffic scenes")
    cond = domain.conditions(args.n, "test", args.seed)
    sigmas = karras_sigmas(cfg.sampler.steps, cfg.sampler.sigma_min, cfg.sampler.sigma_max, cfg.sampler.rho)
    trace = []

    def record(step: dict) -> None:
        trace.append((float(step["sigma"]), step["x"][..., :2] * POSITION_SCALE,
                      step["denoised"][..., :2] * POSITION_SCALE))

    with torch.no_grad():
        x0 = sample(model, domain.sample_shape(cond, args.n), sigmas, cond,
                    generator=torch.Generator().manual_seed(args.seed), callback=record)
    samples = domain.decode(x0, cond)
    hits, _ = pair_stats(samples["boxes"], samples["defined"])
    table_ids = domain.table.lookup(cond["scene"])
    _, data_gaps = pair_stats(domain.table.boxes[table_ids], domain.table.defined[table_ids])
    overlap = np.array([h[0] for h in hits])
    centre = np.array([h[1] for h in hits])

    xy = x0[..., :2] * POSITION_SCALE
    dist = torch.cdist(xy, xy)
    n = xy.shape[1]
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)[None]
    both = cond["defined"][:, :, None] & cond["defined"][:, None, :] & upper
    close = torch.nonzero((dist < CLOSE_M) & both)
    far = torch.nonzero((dist > FAR_M[0]) & (dist < FAR_M[1]) & both)

    def median_gap(t: torch.Tensor, pairs: torch.Tensor) -> float:
        if len(pairs) == 0:
            return float("nan")
        return float((t[pairs[:, 0], pairs[:, 1]] - t[pairs[:, 0], pairs[:, 2]]).norm(dim=-1).median())

    along = [{"sigma": s, "close_noisy_m": median_gap(xs, close), "close_denoised_m": median_gap(ds, close),
              "far_noisy_m": median_gap(xs, far), "far_denoised_m": median_gap(ds, far)} for s, xs, ds in trace]
    q = [0.1, 0.25, 0.5, 0.75, 0.9]
    summary = {
        "scenes": args.n, "colliding_pairs": len(hits), "colliding_pairs_per_scene": len(hits) / args.n,
        "overlap_share_quantiles": dict(zip(map(str, q), np.quantile(overlap, q).tolist())) if len(hits) else {},
        "centre_distance_m_quantiles": dict(zip(map(str, q), np.quantile(centre, q).tolist())) if len(hits) else {},
        "data_gap_m_quantiles": dict(zip(["0.001", "0.01", "0.05", "0.5"],
                                         np.quantile(data_gaps, [0.001, 0.01, 0.05, 0.5]).tolist())),
        "close_pairs": len(close), "far_pairs": len(far), "along_sampler": along,
    }
    print(f"{args.run_dir}: {len(hits)} colliding pairs in {args.n} scenes; overlap share of the smaller box "
          f"median {np.median(overlap) if len(hits) else float('nan'):.2f}, centre distance median "
          f"{np.median(centre) if len(hits) else float('nan'):.2f} m; data: closest gap "
          f"{min(data_gaps) if data_gaps else float('nan'):.2f} m")
    table("median distance between the two vehicles of a pair along the sampler (m)",
          ["σ", "close: noisy", "close: denoised", "far: noisy", "far: denoised"],
          [[f"{a['sigma']:.3f}", f"{a['close_noisy_m']:.2f}", f"{a['close_denoised_m']:.2f}",
            f"{a['far_noisy_m']:.2f}", f"{a['far_denoised_m']:.2f}"] for a in along])
    write(f"traffic_duplicates_{Path(args.run_dir).name}", {"run_dir": args.run_dir, "stage": args.stage, **summary},
          args.out)


if __name__ == "__main__":
    main()
