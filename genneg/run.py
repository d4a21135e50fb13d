"""`genneg run`: every stage of the method and every baseline, evaluated on the same held-out data, resumable.

Layout of a run folder::

    <run_dir>/config.json                the resolved RunConfig
    <run_dir>/seed<S>/state.json         finished stages and their metrics (what --resume skips)
    <run_dir>/seed<S>/*.safetensors      base, classifiers, distilled student, baseline networks
    <run_dir>/seed<S>/samples_<stage>.npz decoded evaluation samples with their verdicts
    <run_dir>/seed<S>/nll_<stage>.npz     the NLL bound of each held-out point (stages are compared point by point)
    <run_dir>/seed<S>/*.state.pt         resumable train state of every network (weights_only loading)
    <run_dir>/seed<S>/labelled_<name>.safetensors, drawn_*.safetensors, *.teacher_samples.safetensors
                                         samples a round / baseline / distillation drew (and their oracle labels)
    <run_dir>/report.md, results.json, figures/   the aggregate over seeds

What a SIGKILL loses with ``--resume``: only the work since the last of these checkpoints. Training resumes from its
last train-state checkpoint (``checkpoint_every`` steps) bit for bit; drawn and labelled samples are kept; a stage's
evaluation (sampling + NLL bound) is redone unless ``state.json`` records the stage. Every file is written to a
temporary name and moved into place, so a kill never leaves half a file.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .baselines import discriminator_guidance, no_importance_weights, penalty_guidance, time_independent_guidance
from .checkpoint import atomic_write, read_json, read_npz, write_json
from .config import RunConfig
from .evaluate import EvalData, evaluate_denoiser, infraction_summary, nll_points
from .context import RunContext
from .domain import Domain
from .genneg import gen_neg, load_classifier
from .likelihood import mean_and_stderr
from .models import fit_base, load_denoiser
from .oracle import Oracle, OracleResult
from .rng import stream_seed
from .stats import wilson_interval

__all__ = ["run_seed", "run", "NullUI", "load_seed"]


class NullUI:
    """Progress hooks for the library; the CLI passes one that draws tqdm bars and writes stats.jsonl."""

    def bar(self, desc: str, total: int):
        return _NullBar()

    def log(self, **record):
        pass


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass

    def train_callback(self):
        return None


class SeedRun:
    """One seed's stages. ``state.json`` records finished stages, so a resumed run skips them."""

    def __init__(self, domain: Domain, cfg: RunConfig, seed_dir: Path, oracle, resume: bool, ui):
        self.domain, self.cfg, self.dir, self.oracle, self.resume, self.ui = domain, cfg, seed_dir, oracle, resume, ui
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "state.json"
        self.state = read_json(path) if resume and path.exists() else {"stages": {}}
        self.eval_data = EvalData(domain, cfg)
        self.clock = time.perf_counter()

    def done(self, stage: str) -> dict | None:
        return self.state["stages"].get(stage)

    def finish(self, stage: str, record: dict):
        now = time.perf_counter()
        record = {**record, "seconds": now - self.clock}  # training + evaluation wall time of this stage
        self.clock = now
        self.state["stages"][stage] = record
        write_json(self.dir / "state.json", self.state)
        self.ui.log(stage=stage, seed=self.cfg.seed, **record)

    def train_bar(self, desc: str, steps: int):
        bar = self.ui.bar(desc, steps)
        return bar, getattr(bar, "train_callback", lambda: None)()

    def evaluate(self, stage: str, denoiser, extra: dict | None = None) -> dict:
        """Every stage on the run's ``("eval",)`` stream: the same conditions, sampler noise, held-out points and
        bound noise, so NLLs are paired (``nll.diff_base``: this stage's minus the base's, point by point)."""
        self.close_bars()
        bar = self.ui.bar(f"eval {stage}", self.cfg.eval.num_samples)
        seed = stream_seed(self.cfg.seed, "eval")
        metrics, samples, result = evaluate_denoiser(denoiser, self.domain, self.cfg, self.eval_data, self.oracle,
                                                     seed=seed, with_nll=False, progress=bar.update)
        bar.close()
        nll = nll_points(denoiser, self.cfg, self.eval_data, seed).double().numpy()
        metrics["nll"] = dict(zip(("mean", "se"), mean_and_stderr(torch.from_numpy(nll))))
        base = self.dir / "nll_base.npz"
        if stage != "base" and base.exists():
            diff = nll - read_npz(base, "per-point NLL", ("nll",))["nll"]
            metrics["nll"]["diff_base"] = dict(zip(("mean", "se"), mean_and_stderr(torch.from_numpy(diff))))
        if distributed.is_main():
            atomic_write(self.dir / f"nll_{stage}.npz", lambda tmp: _savez(tmp, {"nll": nll}))
        _save_samples(self.dir / f"samples_{stage}.npz", samples, result)
        record = {"metrics": metrics, **(extra or {})}
        self.finish(stage, record)
        return record

    @property
    def context(self) -> RunContext:
        """The method's context: this seed's folder, resume, and one pair of progress bars per phase."""
        return RunContext(self.dir, self.resume, phases=self._phase_bars)

    def _phase_bars(self, name: str, steps: int, samples: int):
        """Closes the previous phase's bars and opens this one's: samples drawn, then training steps."""
        self.close_bars()
        sbar = self.ui.bar(f"{name}: sampling", samples) if samples else _NullBar()
        bar, cb = self.train_bar(name, steps)
        self.bars = [sbar, bar]
        return sbar.update, cb

    def close_bars(self):
        for bar in getattr(self, "bars", ()):
            bar.close()
        self.bars = []


def _save_samples(path: Path, samples, result: OracleResult):
    if not distributed.is_main():  # under torchrun every rank holds the same samples; rank 0 writes them
        return
    arrays = {f"s_{k}": v for k, v in samples.items()} if isinstance(samples, dict) else {"samples": samples}
    arrays.update(valid=result.valid, defined=result.defined, **{f"r_{k}": v for k, v in result.reasons.items()})
    atomic_write(path, lambda tmp: _savez(tmp, arrays))


def _savez(path: str, arrays: dict) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a temporary name
        np.savez_compressed(f, **arrays)


def load_samples(path: Path) -> tuple[Any, OracleResult]:
    z = read_npz(path, "evaluation samples", ("valid", "defined"))
    samples = z["samples"] if "samples" in z else {k[2:]: v for k, v in z.items() if k.startswith("s_")}
    reasons = {k[2:]: v for k, v in z.items() if k.startswith("r_")}
    return samples, OracleResult(z["valid"], reasons, z["defined"])


def run_seed(domain: Domain, cfg: RunConfig, seed_dir: str | Path, oracle: Oracle, *, resume: bool = False,
             ui=None) -> dict:
    """Runs base → Gen-neG (rounds, distilled) → baselines for one seed, evaluating each stage once; returns
    ``{stage: record}``. A resumed run re-enters the method through its cached draws and train states and skips the
    evaluation of every stage ``state.json`` records."""
    s = SeedRun(domain, cfg, Path(seed_dir), oracle, resume, ui or NullUI())
    base = _base(s)
    for stage in gen_neg(base, domain, cfg, oracle, s.context):
        if not s.done(stage.name):
            s.evaluate(stage.name, stage.model, {"round": stage.round.summary()} if stage.round else None)
    _baselines(s, base)
    s.close_bars()
    return s.state["stages"]


def _base(s: SeedRun):
    path = s.dir / "base.safetensors"
    if s.done("base") and path.exists():
        return load_denoiser(s.domain, s.cfg, path)
    if s.cfg.pretrained_base:  # checked against this run's config and copied in, never trained here
        from .pretrained import install_base

        base = install_base(s.cfg.pretrained_base, s.domain, s.cfg, path)
        s.evaluate("base", base, {"pretrained": s.cfg.pretrained_base})
        return base
    callback = s.context.phase("base", s.cfg.base.steps).callback
    base = fit_base(s.domain, s.cfg, s.dir, resume=s.resume, callback=callback).eval().requires_grad_(False)
    s.evaluate("base", base)
    return base


def _baselines(s: SeedRun, base):
    cfg = s.cfg
    todo = [b for b in cfg.genneg.baselines if not s.done(b)]
    if "rejection" in todo:
        s.finish("rejection", {"metrics": rejection_metrics(s.state["stages"]["base"]["metrics"])})
    ctx, n, steps = s.context, cfg.genneg.samples_per_round, cfg.classifier.steps
    if "no_is" in todo:
        guided, r = no_importance_weights(base, s.domain, cfg, s.oracle, ctx.phase("no_is", steps, n))
        s.evaluate("no_is", guided, {"round": r.summary()})
    if "time_independent" in todo:
        path = s.dir / "classifier1.safetensors"
        round1 = load_classifier(s.domain, cfg, path, base) if path.exists() else None
        guided, r = time_independent_guidance(base, s.domain, cfg, s.oracle, round1,
                                              ctx.phase("time_independent", steps, n))
        s.evaluate("time_independent", guided, {"round": r.summary()})
    if "discriminator" in todo:
        guided, report = discriminator_guidance(base, s.domain, cfg, ctx.phase("discriminator", steps, n))
        s.evaluate("discriminator", guided, {"discriminator": report})
    if "penalty" in todo and hasattr(s.domain, "penalty"):
        s.evaluate("penalty", penalty_guidance(base, s.domain, cfg))


def rejection_metrics(base: dict) -> dict:
    """Rejection sampling of the base model with the oracle: exactly the target p⁺, at 1/α raw samples per valid one.

    Its samples are valid by construction; its held-out NLL is the base's plus log α (docs/method.md), with a
    standard error that includes α's (delta method: Var log α̂ ≈ (1 − α) / (n α)); its cost is the base sampler's
    time and the oracle's, divided by α.
    """
    inf = base["infraction"]
    n_valid = inf["n"] - inf["total"]["count"]
    alpha = n_valid / inf["n"]
    accepted = OracleResult(np.ones(n_valid, bool), {k: np.zeros(n_valid, bool) for k in inf["reasons"]})
    out = {
        "infraction": infraction_summary(accepted),
        "alpha": alpha,
        "alpha_ci": list(wilson_interval(n_valid, inf["n"])),
        "raw_samples_per_valid": 1 / alpha if alpha > 0 else math.inf,
        "seconds_per_1000": base["seconds_per_1000"] / alpha if alpha > 0 else math.inf,
        "valid_per_second": base["valid_per_second"],
    }
    if "nll" in base and alpha > 0:
        se_log_alpha = math.sqrt((1 - alpha) / (inf["n"] * alpha))
        out["nll"] = {"mean": base["nll"]["mean"] + math.log(alpha), "se": math.hypot(base["nll"]["se"], se_log_alpha),
                      "diff_base": {"mean": math.log(alpha), "se": se_log_alpha}, "analytic": True}
    return out


def run(domain: Domain, cfg: RunConfig, run_dir: str | Path, *, seeds: int = 1, resume: bool = False, ui=None,
        oracle_names: list[str] | None = None, workers: int = 1, domain_path: str | None = None,
        executor=None) -> dict:
    """Runs ``seeds`` independent seeds (cfg.seed, cfg.seed + 1, ...) and writes the aggregate report.

    With ``workers > 1`` seeds run in parallel processes (one torch thread each); each rebuilds the domain from
    ``cfg.data`` (and ``domain_path``), so the domain object itself never crosses a process boundary.
    ``executor`` (a process pool, a Dask client's executor) runs every oracle labelling of the run instead.
    """
    from .report import write_report

    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another folder")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if executor is not None and workers > 1 and seeds > 1:
        raise ValueError("an oracle executor cannot be shared with seeds running in worker processes")
    distributed.barrier()  # under torchrun: every rank has looked for config.json before rank 0 writes it
    write_json(run_dir / "config.json", cfg.to_dict())
    cfgs = [replace(cfg, seed=cfg.seed + i) for i in range(seeds)]
    if workers == 1 or seeds == 1:
        oracle = distributed.labelling_oracle(domain.oracle(oracle_names), executor)
        per_seed = {c.seed: run_seed(domain, c, run_dir / f"seed{c.seed}", oracle, resume=resume, ui=ui) for c in cfgs}
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(min(workers, seeds), mp_context=mp.get_context("spawn")) as pool:
            futures = {c.seed: pool.submit(_seed_worker, c.to_dict(), str(run_dir / f"seed{c.seed}"), oracle_names,
                                           resume, domain_path) for c in cfgs}
            per_seed = {seed: f.result() for seed, f in futures.items()}
    return write_report(domain, cfg, run_dir, per_seed)


def _seed_worker(cfg_dict: dict, seed_dir: str, oracle_names, resume: bool, domain_path) -> dict:
    import torch

    from .config import config_from_dict
    from .domain import get_domain

    torch.set_num_threads(1)
    cfg = config_from_dict(RunConfig, cfg_dict)
    domain = get_domain(cfg.domain, domain_path=domain_path, **cfg.data)
    return run_seed(domain, cfg, seed_dir, domain.oracle(oracle_names), resume=resume)


def load_seed(seed_dir: str | Path, domain_path: str | None = None):
    """Everything one finished seed of a run trained: ``(cfg, domain, base, classifiers, distilled or None)``.

    ``cfg`` is the run's config with this seed; classifiers are in round order.
    """
    from .config import config_from_dict
    from .domain import get_domain

    seed_dir = Path(seed_dir)
    cfg = config_from_dict(RunConfig, read_json(seed_dir.parent / "config.json"))
    cfg = replace(cfg, seed=int(seed_dir.name.removeprefix("seed")))
    domain = get_domain(cfg.domain, domain_path=domain_path, **cfg.data)
    base = load_denoiser(domain, cfg, seed_dir / "base.safetensors")
    rounds = sorted(seed_dir.glob("classifier[0-9]*.safetensors"), key=lambda p: int(p.stem.removeprefix("classifier")))
    classifiers = [load_classifier(domain, cfg, p, base) for p in rounds]
    student = seed_dir / "distilled.safetensors"
    return cfg, domain, base, classifiers, load_denoiser(domain, cfg, student) if student.exists() else None
