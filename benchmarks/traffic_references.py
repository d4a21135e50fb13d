"""Reference rows of the traffic evaluation: what the oracle and ``TrafficDomain.metrics`` say of held-out data, of
real boxes on shuffled maps and of the lane-placement heuristic (``genneg.domains.traffic.references``), on the held-out
split's conditions (the engine's draw for ``--seed``); with ``--base-results``, rejection sampling of a run's base.

    python benchmarks/traffic_references.py --preset tiny             # the tiny SUMO set; under a minute
    python benchmarks/traffic_references.py --preset cpu --n 2000     # the cpu data (in the domain's cache)

Every measure is printed as a row, a column per reference, one table for all the split's networks and, where the
split holds real networks, one for its generated networks and one per real network. ``raw_per_valid`` is
``rejection_cost`` of each row's invalid rate: raw scenes per valid one if that source were rejection-sampled.
Writes ``benchmarks/results/traffic_references_<preset>.json``.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

from common import parser, setup, table, traffic_data_dir, write


def domain_for(preset: str, data_dir: str | None):
    """The traffic domain with the run preset's data settings (so its map crop is the one the models see)."""
    from genneg.domains.traffic import TrafficDomain

    data = dict(TrafficDomain().presets()[preset].data)
    if data_dir is None and preset == "tiny":
        data_dir = traffic_data_dir()
    return TrafficDomain(data_dir=data_dir, **data)


def network_groups(domain, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Row masks of ``ids``: all networks, and where real networks are present, generated ones and each real one."""
    from genneg.domains.traffic.data import read_manifest

    kinds = {n["name"]: n["kind"] for n in read_manifest(domain.prepare_data())["networks"]}
    names = domain.table.network[ids]
    real = sorted({n for n in names if kinds[n] == "real"})
    groups = {"all networks": np.ones(len(ids), bool)}
    if real:
        groups["generated networks"] = np.array([kinds[n] != "real" for n in names])
        groups.update({n: names == n for n in real})
    return groups


def reference_samples(domain, ids: np.ndarray, split: str, seed: int) -> tuple[dict, dict]:
    """``{reference: decoded samples}`` on scenes ``ids`` and the seconds each took to build."""
    from genneg.domains.traffic.references import data_samples, lane_samples, shuffled_samples
    from genneg.rng import numpy_rng

    t = domain.table
    split_ids = t.ids(split)
    sizes = t.boxes[split_ids, 1:][t.defined[split_ids, 1:]][:, 3:5].astype(np.float64)
    build = {
        "held-out data": lambda: data_samples(t, ids),
        "real boxes, shuffled maps": lambda: shuffled_samples(t, ids, numpy_rng(seed, "references", "shuffle")),
        "lane heuristic": lambda: lane_samples(t, ids, numpy_rng(seed, "references", "lanes"), sizes,
                                               radius=domain.data_cfg.scene.radius),
    }
    samples, seconds = {}, {}
    for name, fn in build.items():
        t0 = time.perf_counter()
        samples[name] = fn()
        seconds[name] = time.perf_counter() - t0
    return samples, seconds


def take(samples: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in samples.items()}


def measure(domain, samples: dict, split: str, networks) -> dict:
    """``TrafficDomain.metrics`` against the data of ``networks``, plus ``raw_per_valid`` and ``vehicle_ratio``
    (generated vehicles over the slots the conditions define: the shuffled rows carry their donors' count)."""
    from genneg.domains.traffic.references import rejection_cost

    result = domain.oracle()(samples)
    m = domain.metrics(samples, None, result, split, networks)
    inv = m["invalid_per_scene"]
    bounds = (None, None) if math.isnan(inv["lo"]) else (inv["lo"], inv["hi"])
    m["raw_per_valid"] = rejection_cost(inv["value"], *bounds)
    wanted = domain.table.defined[samples["scene"], 1:].sum()
    m["vehicle_ratio"] = {"value": float(samples["defined"][:, 1:].sum() / max(wanted, 1)), "lo": math.nan,
                         "hi": math.nan}
    return m


def base_rejection(path: str) -> dict:
    """``rejection_cost`` of the base row of a run's ``results.json`` (its t-interval over seeds, or for one seed
    its Wilson interval)."""
    from genneg.domains.traffic.references import rejection_cost

    row = json.loads(open(path).read())["aggregate"]["rows"]["base"]
    mean, hw = row["infraction"]["mean"], row["infraction"]["half_width"]
    lo, hi = row["wilson_first_seed"] if math.isnan(hw) else (max(mean - hw, 0.0), min(mean + hw, 1.0))
    return {"invalid_per_scene": {"value": mean, "lo": lo, "hi": hi}, "raw_per_valid": rejection_cost(mean, lo, hi)}


def cell(entry: dict | None) -> str:
    if entry is None:
        return ""
    v, lo, hi = entry["value"], entry["lo"], entry["hi"]
    return f"{v:.4g}" + ("" if math.isnan(lo) else f" [{lo:.4g}, {hi:.4g}]")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--preset", default="tiny", help="run preset whose data settings to use (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="cache root of the SUMO data (default: the domain's; tiny: "
                                                    "the benchmarks' own set under .cache/bench)")
    p.add_argument("--split", default="test")
    p.add_argument("--n", type=int, default=1000, help="conditions drawn from the split (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the conditions and references")
    p.add_argument("--base-results", default=None, help="a run's results.json: adds rejection sampling of its base")
    args = p.parse_args()
    setup(args.threads)

    t0 = time.perf_counter()
    domain = domain_for(args.preset, args.data_dir)
    ids = domain.table.lookup(domain.conditions(args.n, args.split, args.seed)["scene"])
    load_seconds = time.perf_counter() - t0
    samples, build_seconds = reference_samples(domain, ids, args.split, args.seed)
    results = {}
    for group, mask in network_groups(domain, ids).items():
        networks = sorted(set(domain.table.network[ids[mask]].tolist()))
        results[group] = {name: measure(domain, take(s, mask), args.split, networks) for name, s in samples.items()}
        if args.base_results:
            results[group]["rejection sampling (base)"] = base_rejection(args.base_results)
        names = list(dict.fromkeys(k for m in results[group].values() for k in m))
        rows = [[k, *(cell(m.get(k)) for m in results[group].values())] for k in names]
        table(f"{args.preset}, {args.split} split, {group}: {int(mask.sum())} scenes on "
              f"{len(np.unique(domain.table.network[ids[mask]]))} network(s); [95 % bootstrap over networks]",
              ["measure", *results[group]], rows)
    total = time.perf_counter() - t0
    print(f"\ndata loaded in {load_seconds:.1f} s; references built in "
          + ", ".join(f"{k} {v:.1f} s" for k, v in build_seconds.items()) + f"; total {total:.1f} s", flush=True)
    write(f"traffic_references_{args.preset}",
          {"preset": args.preset, "split": args.split, "n": args.n, "seed": args.seed,
           "networks": sorted(set(domain.table.network[ids].tolist())), "seconds": round(total, 1),
           "load_seconds": round(load_seconds, 1), "build_seconds": build_seconds, "results": results}, args.out)


if __name__ == "__main__":
    main()
