"""Pooled or per-frame classifier head? Both trained on the same labelled samples of a motion base, compared held out.

    OMP_NUM_THREADS=1 python benchmarks/motion_classifier_heads.py --state runs/motion-cpu-base/base.state.pt \\
        --n 1024 --steps 800 --tag cpu-base

Draws ``--n`` windows from the base's EMA weights (a ``genneg train`` state or ``.safetensors``) on train conditions,
labels them with the physical oracle, trains one classifier per head (``cpu`` preset classifier net, importance
weights at the drawn α) on 3/4 of them and reports, on the other 1/4 in their natural proportions, the engine's
``classifier_report``: per ln σ bin the BCE gain over the best x-blind predictor, AUC and accuracy, and the σ up to
which the classifier is informative. Results: ``benchmarks/results/motion_classifier_heads_<tag>.json``.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from common import parser, report_json, setup

from genneg.checkpoint import load_state, load_weights
from genneg.classifier import NoisyClassifier, classifier_report, fit_classifier
from genneg.config import SamplerConfig
from genneg.domain import get_domain
from genneg.generate import generate
from genneg.labelling import label
from genneg.models import build_denoiser


def _base(domain, cfg, path: str):
    model = build_denoiser(domain, cfg)
    state = load_state(path)["ema"] if path.endswith(".pt") else load_weights(path)[0]
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def main(argv=None) -> dict:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--state", required=True, help="base.state.pt or base.safetensors of a cpu-preset base")
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--tag", required=True)
    args = p.parse_args(argv)
    setup(args.threads)
    cfg = get_domain("motion").presets()["cpu"]
    domain = get_domain("motion", **cfg.data)
    base = _base(domain, cfg, args.state)
    cond = domain.conditions(args.n, "train", 7)
    with torch.no_grad():
        x0 = generate(base, domain.sample_shape, args.n, SamplerConfig(steps=cfg.sampler.steps, batch_size=256), cond,
                      seed=7)  # fmt: skip
    result = label(domain.oracle(), domain.decode(x0, cond), cond)
    labels = torch.as_tensor(result.valid)
    alpha = float(labels.float().mean())
    cut = 3 * args.n // 4
    train_part = (x0[:cut], labels[:cut], {k: v[:cut] for k, v in cond.items()})
    held = (x0[cut:], labels[cut:], {k: v[cut:] for k, v in cond.items()})
    out = {"tag": args.tag, "state": args.state, "n": args.n, "alpha": alpha, "steps": args.steps,
           "reasons": {k: float(v.mean()) for k, v in result.reasons.items()}}  # fmt: skip
    for head in ("pooled", "frames"):
        net = domain.make_classifier_net({**cfg.classifier_net, "head": head})
        model = NoisyClassifier(net, domain.sigma_data)
        model = fit_classifier(model, train_part[0], train_part[1], replace(cfg.classifier, steps=args.steps,
                               checkpoint_every=0), cond=train_part[2], alpha=alpha)  # fmt: skip
        report = classifier_report(model.eval(), held[0], held[1], held[2])
        out[head] = {"informative_sigma_max": report["informative_sigma_max"], "collapsed": report["collapsed"],
                     "bins": [{k: b[k] for k in ("sigma_lo", "sigma_hi", "bce", "reference_bce", "gain", "gain_se",
                                                  "auc", "accuracy")} for b in report["bins"]]}  # fmt: skip
    report_json(f"motion_classifier_heads_{args.tag}", out, args.out)
    return out


if __name__ == "__main__":
    main()
