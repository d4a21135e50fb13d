"""Oracle throughput, side by side, and the oracle's share of a Gen-neG round.

1. Traffic collision on SUMO scenes (12 vehicle slots; positions jittered so that some boxes overlap): the
   separating-axis test (the oracle) against Shapely's vectorised predicates and a Python loop over Shapely polygons.
2. Traffic off-road: the oracle (``contains_xy`` on prepared areas, exact distance only for outside corners)
   against a Python loop of per-corner Shapely distances.
3. Motion on the proxy SMPL body: decoding (posing the mesh, the full-mesh metrics) and the oracles, in frames/s.
4. One round (sample -> decode -> oracle -> classifier) on the toy benchmark model and on tiny traffic: the time
   of each part, so the oracle's share is measured, not guessed.

    python benchmarks/oracle_throughput.py
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np
import shapely
import torch

from common import BUILD, ROOT, measured, setup, table, toy_seed, traffic_data_dir, write


def best_of(repeats: int, fn):
    """(fastest seconds, peak MiB of that repeat, result)."""
    best = None
    for _ in range(repeats):
        with measured() as m:
            out = fn()
        if best is None or m.seconds < best[0]:
            best = (m.seconds, m.mib, out)
    return best


# ------------------------------------------------------------------------------------------------------ traffic


def traffic_scenes(scenes: int, seed: int = 0):
    """Real SUMO scenes, repeated to ``scenes``, every vehicle moved by N(0, 1 m): (boxes, defined, areas)."""
    from genneg.domains.traffic.data import load_road_maps, load_scenes, read_manifest

    folder = next(traffic_data_dir().glob("sumo-tiny-*"))
    parts = [load_scenes(folder, s) for s in ("train", "val", "test")]
    boxes = np.concatenate([p["boxes"] for p in parts]).astype(np.float64)
    defined = np.concatenate([p["defined"] for p in parts])
    maps, scene = load_road_maps(folder), read_manifest(folder)["config"]["scene"]
    half = scene["radius"] + scene["area_margin"]
    areas = np.array([maps[k].area_crop(o[:2], o[2], half) for p in parts for k, o in zip(p["network"], p["origin"])])
    idx = np.arange(scenes) % len(boxes)
    boxes, defined, areas = boxes[idx].copy(), defined[idx], areas[idx]
    boxes[..., :2] += np.random.default_rng(seed).normal(0, 1.0, boxes[..., :2].shape)
    return boxes, defined, areas


def offroad_loop(boxes, defined, areas, tolerance: float) -> np.ndarray:
    """Slow reference of ``genneg.oracles.traffic.offroad``: one Shapely distance per corner, in Python."""
    from genneg.oracles.traffic import box_corners

    corners = box_corners(boxes)
    flags = np.zeros(defined.shape, bool)
    for b, n in zip(*np.nonzero(defined)):
        flags[b, n] = any(areas[b].distance(shapely.Point(c)) > tolerance for c in corners[b, n])
    return flags


def bench_traffic(args) -> tuple[list, dict]:
    sys.path.insert(0, str(ROOT / "tests" / "traffic"))  # the Shapely references the oracle's tests use
    from overlap_references import pairwise_overlap_loop, pairwise_overlap_shapely

    from genneg.oracles.traffic import offroad, pairwise_overlap_sat

    boxes, defined, areas = traffic_scenes(args.scenes)
    small = slice(0, args.loop_scenes)
    methods = {
        "collision: SAT (the oracle)": (lambda: pairwise_overlap_sat(boxes, defined), args.scenes),
        "collision: Shapely vectorised": (lambda: pairwise_overlap_shapely(boxes, defined), args.scenes),
        "collision: Shapely loop": (lambda: pairwise_overlap_loop(boxes[small], defined[small]), args.loop_scenes),
        "off-road: vectorised (the oracle)": (lambda: offroad(boxes, defined, areas, 0.3), args.scenes),
        "off-road: Shapely loop": (lambda: offroad_loop(boxes[small], defined[small], areas[small], 0.3),
                                   args.loop_scenes),
    }
    results, rows = {}, []
    for name, (fn, n) in methods.items():
        seconds, mib, out = best_of(args.repeats, fn)
        results[name] = {"scenes": n, "seconds": seconds, "scenes_per_second": n / seconds, "peak_mib": mib,
                         "flagged": float(out.any(-1).mean())}
        results[name]["_out"] = out
    sat, vec = results["collision: SAT (the oracle)"]["_out"], results["collision: Shapely vectorised"]["_out"]
    loop = results["collision: Shapely loop"]["_out"]
    agree = {"collision SAT = Shapely vectorised": float((sat == vec).mean()),
             "collision SAT = loop": float((sat[small] == loop).mean()),
             "off-road vectorised = loop": float((results["off-road: vectorised (the oracle)"]["_out"][small]
                                                  == results["off-road: Shapely loop"]["_out"]).mean())}
    for name, r in results.items():
        del r["_out"]
        ref = results["collision: SAT (the oracle)" if name.startswith("collision") else
                      "off-road: vectorised (the oracle)"]["scenes_per_second"]
        rows.append([name, r["scenes"], r["scenes_per_second"], r["scenes_per_second"] / ref,
                     f'{r["peak_mib"]:.1f}'])
    return rows, {"methods": results, "agreement": agree, "vehicles_per_scene": int(defined.shape[1]),
                  "jitter_m": 1.0, "colliding_scene_fraction": float(sat.any((1, 2)).mean())}


# ------------------------------------------------------------------------------------------------------ motion


def bench_motion(args) -> tuple[list, dict]:
    from genneg.domains.motion import make_domain
    from genneg.oracle import get_oracle
    from genneg.labelling import label

    domain = make_domain(cache_dir=str(BUILD / "motion"))
    x0, cond = domain.dataset("train")
    reps = -(-args.motion_windows // x0.shape[0])
    x0 = x0.repeat(reps, 1, 1)[: args.motion_windows]
    cond = {k: v.repeat((reps,) + (1,) * (v.ndim - 1))[: args.motion_windows] for k, v in cond.items()}
    frames = int(cond["defined"].sum())
    decode_s, decode_mib, samples = best_of(args.repeats, lambda: domain.decode(x0, cond))
    rows = [["decode: pose the proxy mesh + full-mesh metrics", frames / decode_s, 1.0, f"{decode_mib:.1f}"]]
    out = {"frames": frames, "windows": args.motion_windows, "decode": {"seconds": decode_s, "peak_mib": decode_mib,
                                                                        "frames_per_second": frames / decode_s}}
    oracles = {"all three (the domain's oracle)": domain.oracle()}
    oracles.update({name: get_oracle(name, domain="motion") for name in ("penetration", "skating", "float")})
    for name, oracle in oracles.items():
        seconds, mib, result = best_of(args.repeats, lambda o=oracle: label(o, samples, cond))
        out[name] = {"seconds": seconds, "peak_mib": mib, "frames_per_second": frames / seconds,
                     "invalid_fraction": float(1 - result.valid.mean())}
        rows.append([f"oracle: {name}", frames / seconds, frames / seconds / (frames / decode_s), f"{mib:.1f}"])
    return rows, out


# ------------------------------------------------------------------------------------------------------ rounds


class _Timed:
    """Wraps a callable (a denoiser, an oracle, a decode) and adds its wall time to ``seconds``."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0
        self.name = getattr(fn, "name", "timed")
        if hasattr(fn, "reason_names"):
            self.reason_names = fn.reason_names

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


class _TimedDomain:
    """The domain with a timed ``decode``; everything else passes through."""

    def __init__(self, domain):
        self._domain, self.decode = domain, _Timed(domain.decode)

    def __getattr__(self, name):
        return getattr(self._domain, name)


def timed_round(teacher, domain, cfg) -> dict:
    from genneg.genneg import run_round

    den, dom, oracle = _Timed(teacher), _TimedDomain(domain), _Timed(domain.oracle())
    t0 = time.perf_counter()
    r = run_round(den, dom, cfg, oracle, 1)
    total = time.perf_counter() - t0
    parts = {"sampling": den.seconds, "decode": dom.decode.seconds, "oracle": oracle.seconds}
    parts["classifier (training, calibration, report)"] = total - sum(parts.values())
    return {"total_seconds": total, "parts": parts, "oracle_share": oracle.seconds / total,
            "samples": cfg.genneg.samples_per_round, "classifier_steps": cfg.classifier.steps, "alpha": r.alpha,
            "skipped": r.skipped}


def traffic_round_setup(args):
    """A tiny traffic base model trained here for a few hundred steps (its samples have both verdicts)."""
    from genneg.domain import get_domain
    from genneg.models import fit_base

    cfg = get_domain("traffic").presets()["tiny"]
    cfg = replace(cfg, data={**cfg.data, "data_dir": str(traffic_data_dir())},
                  base=replace(cfg.base, steps=args.traffic_base_steps),
                  genneg=replace(cfg.genneg, samples_per_round=args.traffic_round_samples))
    domain = get_domain("traffic", **cfg.data)
    return cfg, domain, fit_base(domain, cfg, run_dir=None).eval().requires_grad_(False)


def bench_rounds(args) -> tuple[list, dict]:
    cfg, domain, base, _, _, source = toy_seed(args.run_dir)
    cfg = replace(cfg, genneg=replace(cfg.genneg, samples_per_round=args.toy_round_samples))
    rounds = {f"toy ({source})": timed_round(base, domain, cfg)}
    if not args.no_traffic:
        tcfg, tdomain, tbase = traffic_round_setup(args)
        rounds["traffic (tiny)"] = timed_round(tbase, tdomain, tcfg)
    rows = []
    for name, r in rounds.items():
        p = r["parts"]
        rows.append([name, r["samples"], r["total_seconds"], p["sampling"], p["decode"], p["oracle"],
                     100 * r["oracle_share"]])
    return rows, rounds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=4000, help="traffic scenes for the vectorised oracles")
    p.add_argument("--loop-scenes", type=int, default=300, help="traffic scenes for the Python loops")
    p.add_argument("--motion-windows", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--run-dir", default=None, help="toy seed folder for the round (default: the benchmark's own)")
    p.add_argument("--toy-round-samples", type=int, default=10_000)
    p.add_argument("--traffic-round-samples", type=int, default=1000)
    p.add_argument("--traffic-base-steps", type=int, default=200)
    p.add_argument("--no-traffic", action="store_true", help="skip everything that needs SUMO")
    p.add_argument("--no-motion", action="store_true", help="skip the motion oracles")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    setup(args.threads)
    torch.manual_seed(0)
    payload = {}
    if not args.no_traffic:
        rows, payload["traffic"] = bench_traffic(args)
        table(f"Traffic oracles ({payload['traffic']['vehicles_per_scene']} vehicle slots, best of {args.repeats}; "
              f"{100 * payload['traffic']['colliding_scene_fraction']:.0f} % of scenes collide)",
              ["method", "scenes", "scenes / s", "vs the oracle", "peak MiB"], rows)
        print("agreement: " + ", ".join(f"{k} {100 * v:.3f} %" for k, v in payload["traffic"]["agreement"].items()))
    if not args.no_motion:
        rows, payload["motion"] = bench_motion(args)
        table(f"Motion on the proxy body ({payload['motion']['frames']} frames in {args.motion_windows} windows, "
              f"best of {args.repeats})", ["step", "frames / s", "vs decode", "peak MiB"], rows)
    rows, payload["rounds"] = bench_rounds(args)
    table("One Gen-neG round: where the time goes (seconds)",
          ["round", "samples", "total", "sampling", "decode", "oracle", "oracle share %"], rows)
    write("oracle_throughput", payload, args.out)


if __name__ == "__main__":
    main()
