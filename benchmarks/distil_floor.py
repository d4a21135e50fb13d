"""How far a student can follow a perfect teacher: distil the toy base model from the checkerboard's exact denoiser.

The exact denoiser of the data (``ToyDomain.data_denoiser``) samples no invalid point. A student of the base
model's architecture, initialised from the base and distilled from it by the project's own ``distil`` (log-uniform
σ, fresh targets), shows the floor that distillation alone leaves, as a function of the number of steps. Prints a
table (infraction %, NLL bound) and writes JSON.

    python benchmarks/distil_floor.py                      # base of the toy default preset, trained once (~1 min)
    python benchmarks/distil_floor.py --base runs/toy/seed0/base.safetensors --steps 3000 27000
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

import torch

from common import BUILD, parser, setup, table, write

from genneg.context import RunContext
from genneg.domain import get_domain
from genneg.evaluate import EvalData, evaluate_denoiser
from genneg.genneg import distil
from genneg.models import fit_base, load_denoiser


def main():
    p = parser(__doc__)
    p.add_argument("--base", default=None, help="a base.safetensors of the toy default preset (default: train one)")
    p.add_argument("--steps", type=int, nargs="+", default=[3000, 9000, 27000])
    args = p.parse_args()
    setup(args.threads)
    domain = get_domain("toy")
    cfg = domain.presets()["default"]
    cfg = replace(cfg, genneg=replace(cfg.genneg, distil_sigma="loguniform", distil_pool=0))
    if args.base is None:
        args.base = BUILD / "floor" / "base.safetensors"
        if not args.base.exists():
            print(f"training the toy default base model into {args.base.parent} (once, about a minute) ...", flush=True)
            fit_base(domain, cfg, args.base.parent)
    base = load_denoiser(domain, cfg, args.base)
    data, oracle = EvalData(domain, cfg), domain.oracle()
    rows = {}
    for name, model, steps in [("base", base, 0), ("exact denoiser", domain.data_denoiser, 0)] + \
            [(f"student, {s} steps", None, s) for s in args.steps]:
        t0 = time.perf_counter()
        if model is None:
            with tempfile.TemporaryDirectory() as tmp:
                steps_cfg = replace(cfg, distil=replace(cfg.distil, steps=steps))
                model = distil(domain.data_denoiser, base, domain, steps_cfg, RunContext(tmp))
        m, _, _ = evaluate_denoiser(model, domain, cfg, data, oracle, seed=5)
        rows[name] = {"steps": steps, "infraction": m["infraction"]["total"]["rate"], "nll": m["nll"]["mean"],
                      "nll_se": m["nll"]["se"], "seconds": time.perf_counter() - t0}
        print(f"{name}: {100 * rows[name]['infraction']:.3f} % invalid, NLL {rows[name]['nll']:.3f} nats", flush=True)
    table("distillation from the exact denoiser (toy default preset)", ["model", "infraction %", "NLL (nats)", "s"],
          [[k, 100 * r["infraction"], r["nll"], r["seconds"]] for k, r in rows.items()])
    write("distil_floor", {"base": str(args.base), "rows": rows}, args.out)


if __name__ == "__main__":
    main()
