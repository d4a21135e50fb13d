"""Does a forward-kinematics loss at small σ help the motion base? Trains the same base with and without it.

    OMP_NUM_THREADS=1 python benchmarks/motion_fk_loss.py --steps 2000 --weight 10 --sigma-max 1.0

The loss is EDM's weighted denoising loss plus ``MotionDomain.denoised_loss``: ``weight`` × the mean squared joint
distance in metres between the joints posed from the denoised window and from the data (``MotionDomain.fk_loss``,
MDM's position loss), on the samples whose σ is below ``--sigma-max``. Both runs share data, initial weights,
batches and noise; the samples are judged as in ``motion_base.py``. Results:
``benchmarks/results/motion_fk_loss_<tag>.json``.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace

from common import full_length_conditions, parser, report_json, setup, train_and_judge

from genneg import rng
from genneg.diffusion import LogNormalSigma, append_dims, masked_sum
from genneg.domain import get_domain
from genneg.models import build_denoiser, data_dict
from genneg.training import train


def fk_objective(domain):
    """loss_fn(model, batch, gen) for genneg.training.train: EDM loss + the domain's ``denoised_loss``."""

    def loss(model, batch, gen):
        x0, cond = batch["x0"], batch["cond"]
        sigma = LogNormalSigma()(x0.shape[0], device=x0.device, generator=gen)
        x = x0 + append_dims(sigma, x0.ndim) * rng.randn(x0.shape, gen, device=x0.device)
        denoised = model(x, sigma, cond)
        total, count = masked_sum((denoised - x0) ** 2, cond)
        return model.loss_weight(sigma) * total / count + domain.denoised_loss(denoised, x0, sigma, cond)

    return loss


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--weight", type=float, default=10.0)
    p.add_argument("--sigma-max", type=float, default=1.0)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--tag", required=True)
    args = p.parse_args(argv)
    setup(args.threads)
    cfg = get_domain("motion").presets()["demo"]
    cfg = replace(cfg, base=replace(cfg.base, steps=args.steps, checkpoint_every=0))
    x0, cond = get_domain("motion", **cfg.data).dataset("train")
    out = {"tag": args.tag, "steps": args.steps, "weight": args.weight, "sigma_max": args.sigma_max}
    for name, weight in (("edm", 0.0), ("edm+fk", args.weight)):
        domain = get_domain("motion", **cfg.data, fk_weight=weight, fk_sigma_max=args.sigma_max)
        model = build_denoiser(domain, cfg)

        def fit():
            return train(model, fk_objective(domain), data_dict(x0, cond), cfg.base,
                         run_dir=tempfile.mkdtemp(prefix="motion-fk-"), name="base").model  # fmt: skip

        _, per_step, judged = train_and_judge(domain, fit, args.steps, {name: full_length_conditions(domain, args.n)},
                                              args.n)
        out[name] = {"seconds_per_step": per_step, **judged[name]}
    report_json(f"motion_fk_loss_{args.tag}", out, args.out)
    return out


if __name__ == "__main__":
    main()
