"""What a long ``genneg train`` records beside its weights: the held-out learning curve and the sessions' wall time.

``curve.json`` holds one point per evaluation of the EMA weights: the infraction rate per reason with Wilson
intervals on a fixed set of conditions and sampler noise, and the NLL bound on a fixed subset of held-out points
(``genneg.evaluate``, on the run's ``("eval",)`` stream). Every point is evaluated on the same draws, so the curve
moves only with the weights, and the last point is what ``genneg eval`` measures on the finished weights.
``curve.png`` plots it. ``train.json`` lists every session that trained the run (wall time, steps, machine, code
commit), which the model card sums.

A training resumed after a kill replays the steps since its last checkpoint bit for bit; their points are evaluated
again and replace the ones recorded before the kill (one point per step, never two).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from pathlib import Path

from . import rng
from .checkpoint import atomic_write, read_json, write_json
from .config import RunConfig
from .domain import Domain
from .evaluate import EvalData, evaluate_denoiser

__all__ = ["LearningCurve", "TrainSessions", "plot_curve", "machine", "code_commit"]

CURVE_JSON, CURVE_PNG, SESSIONS_JSON = "curve.json", "curve.png", "train.json"


class LearningCurve:
    """Held-out evaluations of a training run's EMA weights, kept in ``run_dir/curve.json`` and ``curve.png``.

    Args:
        every: evaluate every ``every`` steps (0: only at the last step); the last step is always evaluated, so a
            finished run's curve ends with the metrics its model card reports.
    """

    def __init__(self, run_dir: str | Path, domain: Domain, cfg: RunConfig, oracle, every: int):
        if every < 0:
            raise ValueError(f"the evaluation interval must be >= 0 steps (0: only at the end), got {every}")
        self.dir, self.domain, self.cfg, self.oracle, self.every = Path(run_dir), domain, cfg, oracle, every
        self.path = self.dir / CURVE_JSON
        self.points: list[dict] = read_json(self.path)["points"] if self.path.exists() else []
        self.seed = rng.stream_seed(cfg.seed, "eval")  # as `genneg eval` and every stage of `genneg run`
        self._data = None

    def due(self, step: int) -> bool:
        return step == self.cfg.base.steps or (self.every > 0 and step % self.every == 0)

    def evaluate(self, step: int, ema, **extra) -> dict:
        """Evaluates ``ema`` (the EMA denoiser at ``step``) and records the point; ``extra`` joins it (loss, ...)."""
        if self._data is None:  # the fixed conditions and held-out subset, built once
            self._data = EvalData(self.domain, self.cfg)
        metrics, _, _ = evaluate_denoiser(ema, self.domain, self.cfg, self._data, self.oracle, seed=self.seed)
        point = {"step": step, **extra, **metrics}
        self.add(point)
        return point

    def add(self, point: dict) -> None:
        """Records ``point``, dropping any recorded at its step or later (they belong to a replayed stretch)."""
        self.points = [p for p in self.points if p["step"] < point["step"]] + [point]
        e = self.cfg.eval
        write_json(self.path, {"split": "test", "num_samples": e.num_samples, "num_nll": e.num_nll,
                               "nll_sigmas": e.nll_sigmas, "seed": self.seed, "every": self.every,
                               "points": self.points})
        plot_curve(self.points, self.dir / CURVE_PNG, title=f"{self.cfg.domain} / {self.cfg.preset}")

    def last(self) -> dict | None:
        return self.points[-1] if self.points else None


def plot_curve(points: list[dict], path: str | Path, title: str = "") -> Path:
    """Infraction rate (per reason, with 95 % Wilson bands) and NLL bound (± 1.96 s.e.) against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points]
    fig, (ax_inf, ax_nll) = plt.subplots(1, 2, figsize=(10, 3.6))
    series = {"total": [p["infraction"]["total"] for p in points]}
    for name in points[-1]["infraction"]["reasons"] if points else ():
        series[name] = [p["infraction"]["reasons"].get(name, {"rate": math.nan, "lo": math.nan, "hi": math.nan})
                        for p in points]
    for name, rates in series.items():
        line, = ax_inf.plot(steps, [100 * r["rate"] for r in rates], marker="o", ms=3, label=name)
        ax_inf.fill_between(steps, [100 * r["lo"] for r in rates], [100 * r["hi"] for r in rates],
                            color=line.get_color(), alpha=0.2)
    ax_inf.set(xlabel="step", ylabel="infraction %", title="held-out infraction (EMA)")
    ax_inf.legend(fontsize=8)
    with_nll = [p for p in points if "nll" in p]
    if with_nll:
        mean = [p["nll"]["mean"] for p in with_nll]
        half = [1.96 * p["nll"]["se"] for p in with_nll]
        s = [p["step"] for p in with_nll]
        ax_nll.errorbar(s, mean, yerr=half, marker="o", ms=3, capsize=2)
    ax_nll.set(xlabel="step", ylabel="nats", title="held-out NLL bound (EMA)")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return Path(path)


class TrainSessions:
    """``run_dir/train.json``: one record per ``genneg train`` session (start, wall seconds, steps, machine, commit).

    A session's record is rewritten at every ``update``, so a killed session keeps the time up to its last update.
    """

    def __init__(self, run_dir: str | Path, threads: int, device: str):
        self.path = Path(run_dir) / SESSIONS_JSON
        self.sessions: list[dict] = read_json(self.path)["sessions"] if self.path.exists() else []
        self.t0 = time.perf_counter()
        self.current = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": 0.0, "first_step": None,
                        "last_step": None, "machine": machine(device, threads), "code_commit": code_commit()}
        self.sessions.append(self.current)

    def update(self, step: int) -> None:
        if self.current["first_step"] is None:
            self.current["first_step"] = step
        self.current.update(seconds=time.perf_counter() - self.t0, last_step=step)
        write_json(self.path, {"sessions": self.sessions})

    def total(self) -> float:
        """Wall seconds of every session so far, this one up to now."""
        return sum(s["seconds"] for s in self.sessions[:-1]) + time.perf_counter() - self.t0

    @staticmethod
    def read(run_dir: str | Path) -> list[dict]:
        return read_json(Path(run_dir) / SESSIONS_JSON)["sessions"]


def machine(device: str = "cpu", threads: int | None = None) -> str:
    """The machine in words: CPU model and cores, torch threads, and the GPU when the run used one."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {threads or torch.get_num_threads()} torch threads, {platform.system()}"
    if str(device).startswith("cuda") and torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def code_commit() -> str:
    """The git commit of the genneg checkout, with "+dirty" when it has uncommitted changes; "unknown" outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")
