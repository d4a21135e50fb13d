"""Generates (or resumes) a traffic SUMO data preset and reports counts, throughput and map coverage.

    OMP_NUM_THREADS=1 python benchmarks/traffic_data.py --preset cpu --workers 2            # generate / resume
    python benchmarks/traffic_data.py --preset cpu --coverage-only --out benchmarks/results/traffic_data_cpu.json

Every finished network is saved at once, so a killed run called again only simulates the networks not done. With
``--coverage-only`` nothing is simulated: the report needs the finished data set. Coverage is the share of data
vehicles farther than 2 m from every lane segment the model sees (``TrafficDomain.coverage``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cpu", help="SUMO data preset (genneg.domains.traffic.data.PRESETS)")
    p.add_argument("--workers", type=int, default=2, help="SUMO worker processes (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="cache root (default: the domain's, $GENNEG_CACHE/traffic)")
    p.add_argument("--coverage-only", action="store_true", help="only report on finished data")
    p.add_argument("--domain", default="{}", help="JSON of TrafficDomain keyword arguments for the coverage report")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    args = p.parse_args()

    from genneg.domains.traffic import TrafficDomain

    domain = TrafficDomain(preset=args.preset, data_dir=args.data_dir, workers=args.workers,
                           **json.loads(args.domain))
    start = time.perf_counter()
    if not args.coverage_only:
        done = []

        def progress(message: str) -> None:
            done.append(message)
            print(f"[{time.perf_counter() - start:7.0f} s] {len(done):4d} {message}", flush=True)

        domain.prepare_data(progress=progress)
    report = domain.data_report()
    report["seconds_this_call"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
