"""The toy data's own likelihood: its exact entropy, and the NLL bound of its exact denoiser on held-out points.

The checkerboard's data are uniform on the black cells, so their entropy in the model's normalised units is
``log(area) − 2·log(scale)``: no model can have a lower expected NLL. The bound of the exact denoiser
(``ToyDomain.data_denoiser``) on many held-out points shows how close the bound itself comes to it (its gap is the
bound's slack: the Gaussian decoder at σ_min and the finite σ range). Prints a table and writes JSON.

    python benchmarks/toy_data_nll.py                 # 8 noise draws over the 20,000 test points
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from common import parser, setup, table, write

from genneg import rng
from genneg.domain import get_domain
from genneg.likelihood import mean_and_stderr, nll_bound


def main():
    p = parser(__doc__)
    p.add_argument("--draws", type=int, default=8, help="independent noise draws over the test points")
    p.add_argument("--points", type=int, default=None, help="test points used (default: all)")
    args = p.parse_args()
    setup(args.threads)
    domain = get_domain("toy")
    cfg = domain.presets()["default"]
    cells = domain.shape.black_cells()
    area = float(np.prod(cells[:, 2:] - cells[:, :2], axis=1).sum())
    entropy = math.log(area) - 2 * math.log(domain.scale)
    x0, _ = domain.dataset("test")
    x0 = x0[: args.points].double()
    e = cfg.eval
    t0 = time.perf_counter()
    per_draw = []
    for d in range(args.draws):
        nll = nll_bound(domain.data_denoiser, x0, None, sigma_min=e.nll_sigma_min, sigma_max=e.nll_sigma_max,
                        num_sigmas=e.nll_sigmas, generator=rng.generator(0, "toy_data_nll", d),
                        batch_size=cfg.sampler.batch_size)
        per_draw.append(nll)
    nll = torch.stack(per_draw).mean(0)  # per point, averaged over the draws
    mean, se = mean_and_stderr(nll)
    rows = [["exact entropy of the data", entropy, 0.0, "closed form"],
            ["NLL bound of the exact denoiser", mean, se, f"{len(x0)} points x {args.draws} draws"]]
    table("Toy data (checkerboard), nats per point in normalised units", ["quantity", "nats", "s.e.", "how"], rows)
    write("toy_data_nll", {"entropy": entropy, "bound": {"mean": mean, "se": se}, "points": len(x0),
                           "draws": args.draws, "seconds": time.perf_counter() - t0})


if __name__ == "__main__":
    main()
