"""A short motion base training and what its samples look like under the physical oracle.

    OMP_NUM_THREADS=1 python benchmarks/motion_base.py --preset demo --steps 600 --n 128 --tag demo-600

Trains a base denoiser for ``--steps`` steps (the preset's net and data, with the overrides given), samples ``--n``
windows on full-length test conditions and on the test split's own masks, and writes to
``benchmarks/results/motion_base_<tag>.json``: seconds per training step, infraction rates per reason (with
Wilson intervals), the median worst-frame depth below the floor, the pelvis-height jitter (mean absolute second
difference, mm per frame) and, with auxiliary channels, their distance to the kinematics.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

from common import full_length_conditions, parser, report_json, setup, train_and_judge

from genneg.domain import get_domain
from genneg.models import fit_base


def _override(cfg, args):
    net = dict(cfg.net)
    for key in ("width", "depth", "heads", "ff", "kernel"):
        if getattr(args, key) is not None:
            net[key] = getattr(args, key)
    data = dict(cfg.data) | ({"aux": args.aux} if args.aux is not None else {})
    base = replace(cfg.base, steps=args.steps, checkpoint_every=0,
                   **({"batch_size": args.batch} if args.batch else {}))  # fmt: skip
    return replace(cfg, net=net, data=data, base=base)


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--n", type=int, default=128, help="windows sampled per condition set")
    p.add_argument("--sampler-steps", type=int, default=18)
    p.add_argument("--tag", required=True)
    for key in ("width", "depth", "heads", "ff", "kernel"):
        p.add_argument(f"--{key}", type=int, default=None)
    p.add_argument("--aux", action=argparse.BooleanOptionalAction, default=None)
    args = p.parse_args(argv)
    setup(args.threads)
    cfg = _override(get_domain("motion").presets()[args.preset], args)
    domain = get_domain("motion", **cfg.data)
    domain.dataset("train")  # loaded before the clock starts
    conditions = {"full_length": full_length_conditions(domain, args.n),
                  "test_masks": domain.conditions(args.n, "test", 0)}  # fmt: skip
    model, per_step, judged = train_and_judge(
        domain, lambda: fit_base(domain, cfg, tempfile.mkdtemp(prefix="motion-base-")), args.steps, conditions,
        args.n, args.sampler_steps)
    out = {"tag": args.tag, "preset": args.preset, "steps": args.steps, "net": cfg.net, "data": cfg.data,
           "params": sum(p.numel() for p in model.parameters()), "seconds_per_step": per_step,
           "sampler_steps": args.sampler_steps, **judged}  # fmt: skip
    report_json(f"motion_base_{args.tag}", out, args.out)
    return out


if __name__ == "__main__":
    main()
