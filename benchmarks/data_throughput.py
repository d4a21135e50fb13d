"""Data generation throughput, side by side: SUMO traffic scenes per second and mocap training windows per second,
each in this process and on a pool of worker processes, with the peak memory of the whole process tree.

SUMO: the ``tiny`` preset generated from scratch into a temporary folder (networks, demand, headless simulation,
scene cutting and oracle filtering), with 1 and with 2 worker processes. Mocap: every DeepMimic clip retargeted to
the proxy SMPL body, grounded and cut into windows, here and on a warm pool of 2 processes (its start-up, which
imports torch and loads the body in each worker, is timed on its own line).

    python benchmarks/data_throughput.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import BUILD, measured, setup, table, write


def bench_sumo(workers: list[int]) -> tuple[list, dict]:
    from genneg.domains.traffic.data import generate_scenes, sumo_preset

    rows, out = [], {}
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp, measured(children=True) as m:
            folder = generate_scenes(tmp, sumo_preset("tiny", workers=w))
            manifest = json.loads((Path(folder) / "manifest.json").read_text())
        kept, tried = manifest["totals"]["scenes_kept"], manifest["totals"]["scenes_tried"]
        out[f"{w} worker(s)"] = {"seconds": m.seconds, "scenes_kept": kept, "scenes_tried": tried,
                                 "networks": len(manifest["networks"]), "scenes_per_second": kept / m.seconds,
                                 "peak_mib_with_workers": m.mib}
        rows.append([f"SUMO tiny, {w} worker process(es)", kept, m.seconds, kept / m.seconds, f"{m.mib:.1f}"])
    return rows, out


def _warm(cache: str, seconds: float = 0.5) -> None:
    """A pool job that imports the pipeline and loads the body, so the timed build meets warm workers."""
    import time

    from genneg.domains.motion.data.windows import _worker_body

    _worker_body("proxy", cache)
    time.sleep(seconds)  # holds this worker, so the other job warms the other one


def bench_mocap(workers: int, repeats: int) -> tuple[list, dict]:
    import concurrent.futures as cf
    import multiprocessing as mp

    from genneg.domains.motion.body import load_body
    from genneg.domains.motion.data.windows import WindowConfig, build_windows

    cache = BUILD / "motion"
    body, cfg = load_body("proxy", cache_dir=cache), WindowConfig()
    rows, out = [], {}
    with measured(children=True) as start:
        pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
        for f in [pool.submit(_warm, str(cache)) for _ in range(workers)]:
            f.result()
    try:
        runs = {"in this process": lambda: build_windows(cfg, body),
                f"pool of {workers} processes": lambda: build_windows(cfg, body, executor=pool,
                                                                      body_source=("proxy", str(cache)))}
        for name, fn in runs.items():
            best = None
            for _ in range(repeats):
                with measured(children=True) as m:
                    data = fn()
                if best is None or m.seconds < best[0]:
                    best = (m.seconds, m.mib)
            n, frames = len(data["features"]), int(data["mask"].sum())
            out[name] = {"seconds": best[0], "windows": n, "frames": frames, "windows_per_second": n / best[0],
                         "peak_mib_with_workers": best[1], "clips": len(data["label_names"])}
            rows.append([f"mocap windows, {name}", n, best[0], n / best[0], f"{best[1]:.1f}"])
    finally:
        pool.shutdown()
    out["pool_start_seconds"] = start.seconds
    rows.append([f"(starting the pool of {workers}: imports, body)", "", start.seconds, "", f"{start.mib:.1f}"])
    return rows, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sumo-workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--mocap-workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="repeats of the mocap build (SUMO runs once per setting)")
    p.add_argument("--no-traffic", action="store_true", help="skip SUMO")
    p.add_argument("--no-motion", action="store_true", help="skip mocap")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    setup(1)
    payload, rows = {}, []
    if not args.no_traffic:
        r, payload["sumo"] = bench_sumo(args.sumo_workers)
        rows += r
    if not args.no_motion:
        r, payload["mocap"] = bench_mocap(args.mocap_workers, args.repeats)
        rows += r
    table("Data generation (peak MiB: growth of this process and its workers)",
          ["data", "items", "seconds", "items / s", "peak MiB"], rows)
    write("data_throughput", payload, args.out)


if __name__ == "__main__":
    main()
