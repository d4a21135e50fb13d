"""GPU check: the device tests, then a few hundred steps of every training loop of each domain on the device.

Prepared for a machine with a CUDA GPU (run it whole, in at most ~8 minutes):

    python benchmarks/gpu_check.py --device cuda --precision bf16

For each domain (toy, traffic, motion; each at ``--preset``) it trains the base denoiser, draws labelled samples and
fits a round-1 classifier, then distils the guided model, ``--steps`` optimiser steps each, on ``--device``, and
prints steps/s and samples/s per loop (table + ``benchmarks/results/gpu_check.json``). Parts that would start after
``--budget`` seconds are skipped and listed as skipped, so the script always ends in time. On a CPU it runs the same
code in a tiny setting (``--device cpu --steps 20 --tiny``); the test suite runs it that way so it cannot rot before
a GPU is at hand.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, measured, table, write  # noqa: E402

DEVICE_TESTS = ["tests/scale/test_devices.py", "tests/engine/test_streams.py"]


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cpu, or auto")
    p.add_argument("--domains", default="toy,traffic,motion")
    p.add_argument("--preset", default="demo", help="each domain's preset whose networks are trained (default demo)")
    p.add_argument("--precision", default="preset", choices=("preset", "fp32", "bf16"),
                   help="training precision (default: the preset's)")
    p.add_argument("--steps", type=int, default=300, help="optimiser steps per training loop")
    p.add_argument("--samples", type=int, default=4096, help="samples drawn for the round and for distillation")
    p.add_argument("--budget", type=float, default=420.0, help="seconds after which no new part starts")
    p.add_argument("--tiny", action="store_true", help="the tiny test presets and small batches (CPU check)")
    p.add_argument("--skip-tests", action="store_true", help="do not run the device tests first")
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device is available; pass --device cpu for the CPU check")
    return name


def device_tests(device: str) -> dict:
    """The device tests under pytest (on a GPU they exercise the CUDA paths); their exit code and closing line."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DEVICE_TESTS],
                          cwd=ROOT, capture_output=True, text=True)
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": proc.returncode, "summary": tail, "seconds": time.perf_counter() - t0, "device": device}


def check_config(domain, args, device: str):
    """The preset's networks and sampler with every loop cut to ``args.steps`` steps and rounds to one."""
    cfg = domain.presets()["tiny" if args.tiny else args.preset]
    precision = {} if args.precision == "preset" else {"precision": args.precision}
    loop = lambda c: replace(c, steps=args.steps, checkpoint_every=0, warmup=min(c.warmup, args.steps // 4),
                             **precision)  # noqa: E731
    return replace(cfg, device=device, base=loop(cfg.base), classifier=loop(cfg.classifier), distil=loop(cfg.distil),
                   genneg=replace(cfg.genneg, rounds=1, samples_per_round=args.samples, distil_samples=args.samples,
                                  distil_pool=0, baselines=()))


def check_domain(name: str, args, device: str, deadline: float, work: Path) -> list[dict]:
    """Base training, sampling, a round (labelling + classifier) and distillation of one domain, timed."""
    from genneg.domain import get_domain
    from genneg.generate import generate
    from genneg.genneg import RunContext, distil, run_round, stack
    from genneg.models import fit_base

    preset = "tiny" if args.tiny else args.preset
    domain = get_domain(name, **get_domain(name).presets()[preset].data)
    cfg = check_config(domain, args, device)
    rows, state = [], {}

    def part(what: str, fn, count: int, unit: str):
        if time.perf_counter() > deadline:
            rows.append({"domain": name, "part": what, "skipped": "time budget spent"})
            return None
        with measured() as m:
            out = fn()
        rows.append({"domain": name, "part": what, "seconds": m.seconds, "rate": count / m.seconds, "unit": unit,
                     "cuda_mib": m.cuda_mib, "precision": cfg.base.precision})
        return out

    run_dir = work / name
    state["base"] = part("base training", lambda: fit_base(domain, cfg, run_dir).eval().requires_grad_(False),
                         cfg.base.steps, "steps/s")
    if state["base"] is None:
        return rows
    cond = domain.conditions(args.samples, "train", 0)
    part("sampling (base)", lambda: generate(state["base"], domain.sample_shape, args.samples, cfg.sampler, cond,
                                              device=device), args.samples, "samples/s")
    r = part("round 1 (sample, label, classifier)", lambda: run_round(state["base"], domain, cfg, domain.oracle(), 1,
                                                                      RunContext(run_dir)), cfg.classifier.steps,
             "steps/s")
    teacher = stack(state["base"], [r.classifier] if r is not None and r.classifier is not None else [], cfg.genneg)
    part("distillation", lambda: distil(teacher, state["base"], domain, cfg, RunContext(run_dir)), cfg.distil.steps,
         "steps/s")
    return rows


def main(argv=None) -> dict:
    args = parse(argv)
    device = _device(args.device)
    torch.set_num_threads(1 if device == "cpu" else torch.get_num_threads())
    start = time.perf_counter()
    deadline = start + args.budget
    tests = None if args.skip_tests else device_tests(device)
    work = ROOT / ".cache" / "gpu_check"
    if work.exists():
        import shutil

        shutil.rmtree(work)
    rows = []
    for name in [d for d in args.domains.split(",") if d]:
        rows += check_domain(name, args, device, deadline, work)
    table(f"GPU check on {device} ({machine()['gpu'] or machine()['cpu']}), {args.steps} steps per loop",
          ["domain", "part", "rate", "unit", "seconds", "CUDA MiB"],
          [[r["domain"], r["part"], r.get("rate", r.get("skipped")), r.get("unit", ""), r.get("seconds", ""),
            r.get("cuda_mib") or ""] for r in rows])
    if tests is not None:
        print(f"device tests: {tests['summary']} (exit {tests['returncode']}, {tests['seconds']:.0f} s)", flush=True)
    payload = {"device": device, "args": vars(args), "tests": tests, "rows": rows,
               "wall_seconds": time.perf_counter() - start}
    write("gpu_check", payload, args.out)
    return payload


if __name__ == "__main__":
    result = main()
    sys.exit(0 if result["tests"] is None or result["tests"]["returncode"] == 0 else 1)
