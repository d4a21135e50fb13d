"""What every benchmark shares: the machine's description, peak-memory sampling, tables, JSON, and the models they
measure (a finished `genneg run` seed, built here in a small setting when none is given).

Each benchmark runs its comparisons side by side in one process, interleaved over repeats in alternating order
(`alternating`), and reports ratios as medians of per-repeat ratios, so they hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".cache" / "bench"  # models and data the benchmarks build for themselves (git-ignored)
OUT = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """CPU model, cores, torch threads and GPU (if any), for the JSON and the README."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def setup(threads: int = 1) -> None:
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------------ memory


def _rss(pid: int | None = None, children: bool = False) -> int:
    """Resident bytes of a process (this one by default), plus its children's when asked."""
    try:
        import psutil

        p = psutil.Process(pid)
        total = p.memory_info().rss
        if children:
            for c in p.children(recursive=True):
                try:
                    total += c.memory_info().rss
                except psutil.Error:
                    pass
        return total
    except ImportError:  # Linux without psutil: this process only
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _release_free_memory() -> None:
    """Hands memory freed by earlier work back to the OS (glibc ``malloc_trim``), so that each measurement starts
    from what is live, not from the high-water mark of whatever ran before it in this process."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: measurements are then upper bounds
        pass


class PeakMemory:
    """Peak resident memory above the starting point while the block runs, sampled every few milliseconds.

    ``children=True`` adds the resident memory of child processes (worker pools). On CUDA the peak of allocated
    device memory is reported too. Attributes after the block: ``mib`` (peak growth of host memory, MiB) and
    ``cuda_mib``.
    """

    def __init__(self, children: bool = False, interval: float = 0.002):
        self.children, self.interval = children, interval
        self.mib, self.cuda_mib = 0.0, None

    def __enter__(self):
        _release_free_memory()
        self.start = _rss(children=self.children)
        self.peak = self.start
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def _poll(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, _rss(children=self.children))
            self.stop.wait(self.interval)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, _rss(children=self.children))
        self.mib = (self.peak - self.start) / 2**20
        if torch.cuda.is_available():
            self.cuda_mib = torch.cuda.max_memory_allocated() / 2**20
        return False


@contextmanager
def measured(children: bool = False):
    """``with measured() as m:`` then ``m.seconds`` and ``m.mib`` (peak memory growth)."""

    class _M:
        seconds = 0.0

    m = _M()
    with PeakMemory(children=children) as mem:
        t0 = time.perf_counter()
        yield m
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        m.seconds = time.perf_counter() - t0
    m.mib, m.cuda_mib = mem.mib, mem.cuda_mib


# ------------------------------------------------------------------------------------------------------ output


def table(title: str, headers: list[str], rows: list[list]) -> str:
    """A plain-text table (also valid markdown), printed and returned."""
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    text = "\n".join([f"\n{title}", line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in cells)])
    print(text, flush=True)
    return text


def _fmt(c) -> str:
    if isinstance(c, float):
        return f"{c:,.3g}" if abs(c) < 100 else f"{c:,.0f}"
    return str(c)


def write(name: str, payload: dict, out: str | None = None) -> Path:
    """Writes ``payload`` with the machine's description as ``benchmarks/results/<name>.json`` (or ``out``)."""
    path = Path(out) if out else OUT / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2, default=float) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", flush=True)
    return path


# ------------------------------------------------------------------------------------------------------ models


def toy_bench_config():
    """The toy `default` preset's networks and sampler (128-wide, 3-deep MLPs, 18 Heun steps, 3 rounds) with training
    budgets cut so that the whole seed builds in a few minutes on 2 CPU cores. Costs depend on the networks and the
    sampler, which are the preset's; quality is lower than the README's runs."""
    from genneg.domain import get_domain

    cfg = get_domain("toy").presets()["default"]
    return replace(
        cfg, preset="bench",
        base=replace(cfg.base, steps=1500, checkpoint_every=0),
        classifier=replace(cfg.classifier, steps=400, checkpoint_every=0),
        distil=replace(cfg.distil, steps=600, checkpoint_every=0),
        genneg=replace(cfg.genneg, rounds=3, samples_per_round=10_000, distil_samples=10_000, distil_pool=0,
                       baselines=()),
        eval=replace(cfg.eval, num_samples=2000, num_nll=300, nll_sigmas=8),
    )


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark has: --threads (torch threads, default 1) and --out (the JSON's path)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    return p


def toy_parser(doc: str, n: int, repeats: int) -> argparse.ArgumentParser:
    """The options of the benchmarks that measure a toy seed: --run-dir, --n, --repeats, --threads, --out."""
    p = parser(doc)
    p.add_argument("--run-dir", default=None, help="a seed folder of a finished run (default: the benchmark's own)")
    p.add_argument("--n", type=int, default=n, help="samples per configuration and repeat")
    p.add_argument("--repeats", type=int, default=repeats)
    return p


def alternating(items: dict, repeat: int) -> list:
    """``items``' pairs in order on even repeats and reversed on odd ones, so no configuration has a favoured slot."""
    pairs = list(items.items())
    return pairs if repeat % 2 == 0 else pairs[::-1]


def toy_seed(run_dir: str | None = None):
    """``genneg.run.load_seed`` of ``run_dir`` (a seed folder of a finished run), or of the benchmarks' own toy run,
    built under ``.cache/bench/toy`` the first time (a few minutes) and reused after.

    Returns ``(cfg, domain, base, classifiers, distilled, source)``.
    """
    from genneg.run import load_seed, run

    if run_dir is None:
        root = BUILD / "toy"
        seed = root / "seed0"
        if not (seed / "distilled.safetensors").exists():
            from genneg.domain import get_domain

            cfg = toy_bench_config()
            print(f"building the benchmark's toy model in {root} (once; a few minutes) ...", flush=True)
            t0 = time.perf_counter()
            run(get_domain("toy", **cfg.data), cfg, root, resume=(root / "config.json").exists())
            print(f"built in {time.perf_counter() - t0:.0f} s", flush=True)
        run_dir = str(seed)
    cfg, domain, base, classifiers, distilled = load_seed(run_dir)
    if distilled is None:
        raise SystemExit(f"{run_dir} has no distilled.safetensors: pass a seed folder of a finished `genneg run`")
    return cfg, domain, base, classifiers, distilled, str(Path(run_dir).resolve().relative_to(ROOT)
                                                           if Path(run_dir).resolve().is_relative_to(ROOT) else run_dir)


def traffic_data_dir() -> Path:
    """The tiny SUMO scene set under ``.cache/bench/traffic`` (generated the first time, about a minute)."""
    from genneg.domains.traffic import TrafficDomain

    TrafficDomain(preset="tiny", data_dir=BUILD / "traffic").prepare_data()
    return BUILD / "traffic"


# ------------------------------------------------------------------------------------------------------ motion


def full_length_conditions(domain, n: int) -> dict:
    """``n`` motion conditions with every frame defined, the clip labels taken in turn."""
    return {"label": torch.arange(n) % len(domain.label_names),
            "defined": torch.ones(n, domain.frames, dtype=torch.bool)}  # fmt: skip


def judge_motion(domain, oracle, x0, cond) -> dict:
    """What the motion benchmarks report of sampled windows ``x0``: infraction rates per reason (Wilson intervals),
    the median worst-frame depth below the floor (mm), the pelvis-height jitter (mean absolute second difference, mm
    per frame) and, with auxiliary channels, the median of each one's distance to the kinematics."""
    import numpy as np

    from genneg.evaluate import infraction_summary
    from genneg.labelling import label

    samples = domain.decode(x0, cond)
    result = label(oracle, samples, cond)
    d = samples["defined"]
    depth = -np.where(d, samples["lowest_height"], np.inf).min(1) * 1000
    root_y = samples["features"][..., 1]
    jitter = np.abs(root_y[:, 2:] - 2 * root_y[:, 1:-1] + root_y[:, :-2])[d[:, 2:]].mean() * 1000
    out = {"infraction": infraction_summary(result), "median_worst_depth_mm": float(np.median(depth)),
           "pelvis_jitter_mm": float(jitter)}  # fmt: skip
    out.update({k: float(np.median(v)) for k, v in samples.items() if k.startswith("aux_")})
    return out


def train_and_judge(domain, train, steps: int, conditions: dict, n: int, sampler_steps: int = 18, seed: int = 1):
    """Trains a motion base with ``train()`` (which returns its EMA denoiser) and judges it: ``n`` windows sampled
    with ``sampler_steps`` Heun steps on each condition set of ``conditions`` (``{name: cond}``), labelled by the
    domain's oracle (``judge_motion``).

    Returns:
        ``(model, seconds per training step, {name: judge_motion(...)})``; the time is the training's alone.
    """
    from genneg.config import SamplerConfig
    from genneg.generate import generate

    start = time.perf_counter()
    model = train().eval()
    per_step = (time.perf_counter() - start) / steps
    oracle, judged = domain.oracle(), {}
    for name, cond in conditions.items():
        with torch.no_grad():
            x0 = generate(model, domain.sample_shape, n, SamplerConfig(steps=sampler_steps), cond, seed=seed)
        judged[name] = judge_motion(domain, oracle, x0, cond)
    return model, per_step, judged


def report_json(name: str, payload: dict, out: str | None = None) -> Path:
    """Prints ``payload`` as JSON and writes it (``write``): the motion benchmarks' report."""
    print(json.dumps(payload, indent=2, default=float), flush=True)
    return write(name, payload, out)


def eval_stream_metrics(model, domain, cfg, data, oracle) -> dict:
    """A model's metrics on a run's evaluation stream ``("eval",)``: the conditions and sampler noise of the run's
    report rows, so every row is paired with the run's base (no NLL; ``genneg.evaluate.nll_points`` gives it)."""
    from genneg.evaluate import evaluate_denoiser
    from genneg.rng import stream_seed

    metrics, _, _ = evaluate_denoiser(model, domain, cfg, data, oracle, seed=stream_seed(cfg.seed, "eval"),
                                      with_nll=False)
    return metrics
