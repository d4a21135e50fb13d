"""What the ``genneg`` command shows and logs: progress bars, ``stats.jsonl``, metrics as text (rank 0 only)."""

from __future__ import annotations

import json
import time
from pathlib import Path

__all__ = ["StatsLog", "TqdmUI", "train_callback", "curve_hook", "format_metrics", "main_only", "say"]


def main_only(quiet: bool) -> bool:
    """Whether progress bars stay off: --quiet, or not rank 0 under torchrun."""
    from genneg import distributed

    return quiet or not distributed.is_main()


def say(text: str) -> None:
    """Prints on rank 0 only (every rank runs the same command under torchrun)."""
    from genneg import distributed

    if distributed.is_main():
        print(text)


class StatsLog:
    """Appends one JSON object a line to ``stats.jsonl`` in the run folder."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "stats.jsonl"

    def write(self, **record):
        from genneg import distributed

        if not distributed.is_main():
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}, default=float) + "\n")


def train_callback(bar, log: StatsLog, stage: str, every: int = 20):
    def cb(info: dict):
        bar.update(1)
        if info["step"] % every == 0:
            bar.set_postfix(loss=f"{info['loss']:.4f}")
            log.write(stage=stage, **info)

    return cb


def curve_hook(curve, sessions, log: StatsLog, bar):
    """``on_step`` for ``fit_base``: evaluates the EMA weights when the curve is due, logs and shows the point."""
    def on_step(step: int, ema):
        if not curve.due(step):
            return
        sessions.update(step)
        point = curve.evaluate(step, ema, wall_seconds=sessions.total())
        log.write(stage="base_curve", **point)
        inf = 100 * point["infraction"]["total"]["rate"]
        bar.set_description(f"base (invalid {inf:.2f} %" + (f", NLL {point['nll']['mean']:.3f}" if "nll" in point
                                                            else "") + ")")

    return on_step


def format_metrics(stage: str, m: dict) -> str:
    inf = m["infraction"]
    t = inf["total"]
    lines = [f"{stage}: infraction {100 * t['rate']:.2f} % [{100 * t['lo']:.2f}, {100 * t['hi']:.2f}] (n={inf['n']}"
             + (f", undefined {inf['undefined']}" if inf["undefined"] else "") + ")"]
    for name, r in inf["reasons"].items():
        lines.append(f"  {name}: {100 * r['rate']:.2f} % [{100 * r['lo']:.2f}, {100 * r['hi']:.2f}]")
    if "nll" in m:
        lines.append(f"  NLL bound: {m['nll']['mean']:.3f} ± {m['nll']['se']:.3f} nats")
    lines.append(f"  sampler: {m['seconds_per_1000']:.3f} s per 1,000 samples")
    return "\n".join(lines)


class TqdmUI:
    """Progress bars and stats.jsonl for ``genneg run``."""

    def __init__(self, log: StatsLog, quiet: bool):
        self.stats, self.quiet = log, quiet

    def bar(self, desc: str, total: int):
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, disable=self.quiet, leave=False)
        bar.train_callback = lambda: train_callback(bar, self.stats, desc)
        return bar

    def log(self, **record):
        self.stats.write(**record)
