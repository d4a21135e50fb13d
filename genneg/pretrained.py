"""Pretrained model folders: a base denoiser trained once (``genneg train``), shipped with a card, started from;
or the distilled Gen-neG model of a ``genneg run`` started from such a base.

A folder (``pretrained/<domain>-<preset>/`` in this repository) holds::

    model.safetensors   the EMA weights of the denoiser (the run's config in its metadata)
    card.json           what it is: domain, preset, architecture and data (configs and hashes), training (steps,
                        batch size, wall time, machine, code commit), held-out metrics, sha256 of the weights, the
                        command that reproduces it and the full run config
    card.md             the same for people, with the learning curve
    curve.json, curve.png   the held-out learning curve of the training run (a base)
    report.md, results.json, figures/   the report of the ``genneg run`` that made it (a distilled model)

``write_model_folder`` makes one from a finished ``genneg train`` run, ``write_stage_folder`` from the distilled
stage of a finished ``genneg run``; the card's ``stage`` says which (absent: ``base``). ``load_pretrained`` refuses
a folder whose weights do not match their sha256, or whose card's architecture or data differ from what the current
code builds for the run's config (naming the field and the command that retrains it). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from . import rng
from .checkpoint import atomic_write, read_json, write_json
from .config import RunConfig, SamplerConfig, config_from_dict
from .curve import CURVE_JSON, CURVE_PNG, TrainSessions, plot_curve
from .domain import Domain
from .models import build_denoiser, load_denoiser

__all__ = ["write_model_folder", "write_stage_folder", "card_stage", "load_pretrained", "install_base", "read_card",
           "card_config", "check_card", "verify_weights", "is_model_folder", "resolve_folder", "architecture",
           "data_identity", "probe", "reproduce_command", "CARD_FORMAT"]

CARD_FORMAT = 1
WEIGHTS, CARD, CARD_MD = "model.safetensors", "card.json", "card.md"
PROBE_SIGMAS = (0.05, 0.5, 5.0)
PROBE_ROWS = 4


# ------------------------------------------------------------------------------------------------- identities


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(obj: Any) -> str:
    """SHA-256 of a nested structure of tensors, arrays, dicts, lists and JSON values (shapes and dtypes included)."""
    h = hashlib.sha256()
    _hash_into(h, obj)
    return h.hexdigest()


def _hash_into(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"array{obj.shape}{obj.dtype.str}".encode())
        h.update(repr(obj.tolist()).encode() if obj.dtype.hasobject else np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(f"key{k!r}".encode())
            _hash_into(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}".encode())
        for v in obj:
            _hash_into(h, v)
    else:
        h.update(json.dumps(obj, sort_keys=True, default=str).encode())


def architecture(domain: Domain, cfg: RunConfig) -> dict:
    """The base denoiser the current code builds for ``cfg``: its net config, σ_data, class, parameter count and
    ``sha256`` (of those and every tensor's name, shape and dtype)."""
    model = build_denoiser(domain, replace(cfg, device="cpu"))
    layout = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    ident = {"net": dict(cfg.net), "sigma_data": float(domain.sigma_data), "network": type(model.net).__name__}
    return {**ident, "parameters": sum(p.numel() for p in model.parameters()),
            "sha256": tree_sha256({**ident, "layout": layout})}


GENNEG_SECTIONS = ("classifier_net", "classifier", "distil", "genneg")  # config sections only Gen-neG reads


def data_identity(domain: Domain, cfg: RunConfig) -> dict:
    """The training data the current code makes for ``cfg.data``: the config, its sha256, the train split's
    sha256 (samples and conditions) and row count."""
    x0, cond = domain.dataset("train")
    return {"config": dict(cfg.data), "config_sha256": tree_sha256(dict(cfg.data)),
            "train_sha256": tree_sha256([x0, cond]), "train_rows": int(x0.shape[0])}


@torch.no_grad()
def probe(denoiser, domain: Domain, cfg: RunConfig) -> list[float]:
    """What the denoiser computes on fixed inputs: mean and RMS of D(σ n; σ) at a few σ, on the stream
    ``(0, "pretrained", "probe")``. Equal weights under a changed network code give other numbers."""
    seed = rng.stream_seed(0, "pretrained", "probe")
    cond = domain.conditions(PROBE_ROWS, "test", seed)
    noise = rng.randn(domain.sample_shape(cond, PROBE_ROWS), rng.generator(seed))
    device = next(denoiser.parameters()).device
    from .batch import to_device

    out = []
    for sigma in PROBE_SIGMAS:
        d = denoiser((noise * sigma).to(device), torch.full((PROBE_ROWS,), sigma, device=device),
                     to_device(cond, device)).double()
        out += [float(d.mean()), float(d.pow(2).mean().sqrt())]
    return out


# ------------------------------------------------------------------------------------------------- writing


def reproduce_command(cfg: RunConfig, presets: dict[str, RunConfig], name: str) -> str:
    """The commands that retrain the base of ``cfg`` and write ``pretrained/<name>`` from it."""
    run_dir = f"runs/{name}-base"
    args = _preset_args(cfg, presets, skip=GENNEG_SECTIONS)  # `genneg train` never reads them
    train = " ".join(["genneg train", cfg.domain, "--preset", cfg.preset, *args, "--run-dir", run_dir])
    return f"{train} && genneg export-model --run-dir {run_dir} --out pretrained/{name}"


def _preset_args(cfg: RunConfig, presets: dict[str, RunConfig], skip: tuple[str, ...] = ()) -> list[str]:
    """``--set`` and ``--seed`` arguments that turn ``cfg``'s preset into ``cfg`` (but for the sections ``skip``)."""
    if cfg.preset not in presets:
        raise ValueError(f"the run's preset {cfg.preset!r} is not a preset of domain {cfg.domain!r} "
                         f"({sorted(presets)}); a shipped model must be reproducible from a preset")
    sets = _differences(presets[cfg.preset].to_dict(), cfg.to_dict(), skip=("device", "pretrained_base", "seed", *skip))
    args = [f"--set {shlex.quote(f'{k}={json.dumps(v)}')}" for k, v in sets]
    if cfg.seed != presets[cfg.preset].seed:
        args.append(f"--seed {cfg.seed}")
    return args


def _differences(a: dict, b: dict, skip=(), prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys whose value in ``b`` differs from ``a`` (one level into dicts, as ``--set`` addresses them)."""
    out = []
    for k, v in b.items():
        if k in skip or a.get(k) == v:
            continue
        if isinstance(v, dict) and isinstance(a.get(k), dict) and not prefix:
            out += _differences(a[k], v, prefix=f"{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def write_model_folder(run_dir: str | Path, out: str | Path, domain: Domain, cfg: RunConfig,
                       presets: dict[str, RunConfig], *, force: bool = False,
                       sampler: SamplerConfig | None = None) -> Path:
    """Writes the model folder ``out`` from a finished ``genneg train`` run in ``run_dir``.

    Args:
        sampler: the folder's sampler (what ``genneg sample`` and ``genneg eval`` use from it), measured on the
            test split for the card beside the learning curve's last point; default: the run's.

    Raises:
        FileNotFoundError: the run has no weights, curve or session log (not finished, or not a train run).
        ValueError: the curve lacks the last step's evaluation, the preset is unknown, or ``out`` exists and
            ``force`` is False.
    """
    run_dir, out = Path(run_dir), Path(out)
    weights = run_dir / "base.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: the training has not finished (continue it with "
                                f"genneg train {cfg.domain} --preset {cfg.preset} --run-dir {run_dir} --resume)")
    if not (run_dir / CURVE_JSON).is_file():
        raise FileNotFoundError(f"{run_dir / CURVE_JSON} does not exist: train the base with `genneg train`, which "
                                "evaluates it on held-out data")
    curve = read_json(run_dir / CURVE_JSON)
    final = curve["points"][-1] if curve["points"] else None
    if final is None or final["step"] != cfg.base.steps:
        raise ValueError(f"{run_dir / CURVE_JSON} has no evaluation at the last step {cfg.base.steps}; continue "
                         f"the training with --resume")
    if out.exists() and not force:
        raise ValueError(f"{out} already exists; pass --force to replace it")
    model = load_denoiser(domain, replace(cfg, device="cpu"), weights)
    card = _card(out.name, run_dir, domain, cfg, presets, model, curve, weights)
    if sampler is not None and sampler != cfg.sampler:
        card = _resampled(card, domain, sampler, {None: model}, keep="curve")
    def fill(tmp: Path) -> None:
        shutil.copyfile(run_dir / CURVE_JSON, tmp / CURVE_JSON)
        plot_curve(curve["points"], tmp / CURVE_PNG, title=f"{out.name}: {cfg.domain} / {cfg.preset}")

    return _write_folder(out, weights, card, fill)


def _write_folder(out: Path, weights: Path, card: dict, fill) -> Path:
    """Writes the model folder ``out`` in one move: the weights, ``fill(folder)``'s files, the card and card.md are
    written to a temporary folder beside it, which then replaces ``out``."""
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(weights, tmp / WEIGHTS)
    fill(tmp)
    write_json(tmp / CARD, card)
    (tmp / CARD_MD).write_text(card_markdown(card))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def _card(name: str, run_dir: Path, domain: Domain, cfg: RunConfig, presets, model, curve: dict, weights: Path) -> dict:
    sessions = TrainSessions.read(run_dir)
    final = curve["points"][-1]
    nll = final.get("nll")
    metrics = {"step": final["step"], "split": curve["split"], "num_samples": curve["num_samples"],
               "num_nll": curve["num_nll"], "infraction": final["infraction"],
               "seconds_per_1000": final["seconds_per_1000"]}
    if nll is not None:
        metrics["nll"] = _with_interval(nll)
    cpu = replace(cfg, device="cpu", pretrained_base="")
    return {
        **_identity(name, domain, cpu, model, weights),
        "training": {"steps": cfg.base.steps, "batch_size": cfg.base.batch_size, "train": cfg.to_dict()["base"],
                     "wall_seconds": sum(s["seconds"] for s in sessions), "sessions": len(sessions),
                     "machine": sorted({s["machine"] for s in sessions}),
                     "code_commit": sorted({s["code_commit"] for s in sessions})},
        "metrics": metrics,
        "reproduce": reproduce_command(cpu, presets, name),
    }


def _sampler_name(sampler: dict) -> str:
    """``kind:steps`` of a card's sampler, as ``--sampler`` takes it."""
    return f"{sampler['kind']}:{sampler['steps']}"


def _kind_steps(sampler: dict) -> dict:
    """What a card's metrics say of the sampler that measured them."""
    return {"kind": sampler["kind"], "steps": sampler["steps"]}


def _resampled(card: dict, domain: Domain, sampler: SamplerConfig, nets: dict, keep: str) -> dict:
    """``card`` for a folder that samples with ``sampler``: its config says so, and the rows of ``nets`` (None: the
    card's own ``metrics``; a key: ``metrics[key]``, e.g. the base's) are measured anew with it, as ``genneg eval``
    of the folder measures them: the test split, the card's conditions and noise, no NLL bound (a sampler does not
    change it). The rows they replace go to ``metrics[keep]`` with the sampler that measured them."""
    from .evaluate import EvalData, evaluate_denoiser

    cfg = replace(card_config(card), sampler=sampler)
    data, old = EvalData(domain, cfg, split="test"), card["metrics"]
    m = {**old, "sampler": _kind_steps(asdict(sampler)), keep: {"sampler": _kind_steps(card["config"]["sampler"])}}
    for key, net in nets.items():
        before = old if key is None else old[key]
        kept = {k: before[k] for k in ("infraction", "seconds_per_1000") if k in before}
        measured, _, _ = evaluate_denoiser(net, domain, cfg, data, domain.oracle(), with_nll=False)
        new = {k: measured[k] for k in ("infraction", "seconds_per_1000", "domain") if k in measured}
        if key is None:
            m.update(new)
            m[keep].update(kept)
        else:
            m[key], m[keep][key] = {**before, **new}, kept
    return {**card, "config": cfg.to_dict(), "metrics": m,
            "reproduce": f"{card['reproduce']} --sampler {_sampler_name(m['sampler'])}"}


def _identity(name: str, domain: Domain, cpu: RunConfig, model, weights: Path) -> dict:
    """The fields every card has that say what the model is: names, architecture, data, weights, probe, config."""
    return {"format": CARD_FORMAT, "name": name, "domain": cpu.domain, "preset": cpu.preset, "seed": cpu.seed,
            "architecture": architecture(domain, cpu), "data": data_identity(domain, cpu),
            "weights": {"file": WEIGHTS, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
            "probe": probe(model, domain, cpu), "config": cpu.to_dict()}


def _with_interval(nll: dict) -> dict:
    """An NLL ``{"mean", "se", ...}`` with ``lo``/``hi`` = mean ∓ 1.96 se."""
    return {**nll, "lo": nll["mean"] - 1.96 * nll["se"], "hi": nll["mean"] + 1.96 * nll["se"]}


def _pct(r: dict) -> str:
    return f"{100 * r['rate']:.2f} % [{100 * r['lo']:.2f}, {100 * r['hi']:.2f}]"


def card_markdown(card: dict) -> str:
    """``card.md``: what the model was trained on, how to reproduce it, its measured limits and learning curve."""
    if card_stage(card) != "base":
        return _stage_markdown(card)
    a, d, t, m = card["architecture"], card["data"], card["training"], card["metrics"]
    sampler = _sampler_name(card["config"]["sampler"])
    columns = [(f"`{sampler}`", m["infraction"])]
    if "curve" in m:  # exported with another sampler than the learning curve's
        columns.insert(0, (f"`{_sampler_name(m['curve']['sampler'])}` (learning curve)", m["curve"]["infraction"]))
    rows = [f"| invalid (any reason) | {' | '.join(_pct(inf['total']) for _, inf in columns)} |"]
    rows += [f"| {k} | {' | '.join(_pct(inf['reasons'][k]) for _, inf in columns)} |"
             for k in m["infraction"]["reasons"]]
    if "nll" in m:
        rows.append(f"| NLL bound (nats) | {m['nll']['mean']:.3f} [{m['nll']['lo']:.3f}, {m['nll']['hi']:.3f}] |"
                    + " same |" * (len(columns) - 1))
    header = f"| metric | {' | '.join(c for c, _ in columns)} |"
    chosen = (f" `genneg sample` and `genneg eval` use the sampler `{sampler}` from this folder (`--sampler` picks "
              f"another); the learning curve was measured with `{_sampler_name(m['curve']['sampler'])}`, on the same "
              "conditions and noise." if "curve" in m else f" Sampler: `{sampler}`.")
    hours, minutes = divmod(round(t["wall_seconds"] / 60), 60)
    name = card["name"]
    return "\n".join([
        f"# {name}: a `{card['domain']}` base denoiser (preset `{card['preset']}`)", "",
        "The EMA weights of a base diffusion model trained by `genneg train`, to start Gen-neG from without training "
        "it again. See `docs/pretrained.md` for the fields of `card.json` and how to check this folder.", "",
        "## Trained on", "",
        f"- data: `{json.dumps(d['config'])}`, {d['train_rows']:,} training rows (train split sha256 "
        f"`{d['train_sha256'][:16]}…`)",
        f"- network: `{a['network']}` `{json.dumps(a['net'])}`, {a['parameters']:,} parameters, σ_data "
        f"{a['sigma_data']} (architecture sha256 `{a['sha256'][:16]}…`)",
        f"- {t['steps']:,} steps of batch {t['batch_size']}, lr {t['train']['lr']}, EMA {t['train']['ema_decay']}, "
        f"seed {card['seed']}",
        f"- {hours} h {minutes:02d} min of wall time in {t['sessions']} session(s) on {'; '.join(t['machine'])}",
        f"- code commit {', '.join(t['code_commit'])}", "",
        "## Reproduce", "", "```bash", card["reproduce"], "```", "",
        f"## Measured limits (held-out, step {m['step']:,})", "",
        f"{m['num_samples']:,} samples on the {m['split']} split's conditions (95 % Wilson intervals) and the NLL "
        f"bound of {m['num_nll']:,} held-out points (± 1.96 s.e.); sampling costs {m['seconds_per_1000']:.3f} s per "
        f"1,000 samples.{chosen} An unguided base: its invalid samples are what Gen-neG "
        "removes.", "",
        header, "|---" * (len(columns) + 1) + "|", *rows, "",
        "## Learning curve", "", f"![learning curve]({CURVE_PNG})", "",
        "## Use", "", "```bash",
        f"genneg run {card['domain']} --preset {card['preset']} --base pretrained/{name}",
        f"genneg sample --run-dir pretrained/{name} --n 1000 --out samples.npz",
        f"genneg eval --run-dir pretrained/{name}", "```", "",
    ])


SHIPPABLE_STAGES = ("distilled",)  # one network each; a round is the base plus its classifiers


def write_stage_folder(run_dir: str | Path, out: str | Path, domain: Domain, cfg: RunConfig, *,
                       stage: str = "distilled", force: bool = False, sampler: SamplerConfig | None = None) -> Path:
    """Writes the model folder ``out`` from the ``stage`` (the distilled student) of a finished ``genneg run``.

    The card is a base card's (architecture, data, weights, probe, config) plus ``stage``, ``from`` (the pretrained
    base it started from and its weights' sha256), ``genneg`` (each round's α and classifier report) and metrics of
    the run's own held-out evaluation: this stage's and the base's, on the same conditions and noise, with the
    paired NLL difference. The run's ``report.md`` and ``results.json`` are copied beside the weights.

    Args:
        run_dir: the ``genneg run`` folder (``config.json``, ``seed<S>/``); its first seed is exported.
        sampler: the folder's sampler; the stage and the run's base are measured anew with it on the run's
            evaluation conditions and noise (``metrics.run`` keeps the run's own rows); default: the run's.

    Raises:
        ValueError: a stage that is not one network (a round is the base plus classifiers), or ``out`` exists
            and ``force`` is False.
        FileNotFoundError: the run has not evaluated the stage yet (continue it with ``--resume``).
    """
    run_dir, out = Path(run_dir), Path(out)
    if stage not in SHIPPABLE_STAGES:
        raise ValueError(f"stage {stage!r} cannot be a model folder: only {list(SHIPPABLE_STAGES)} are one network "
                         "(round<k> is the base guided by k classifiers)")
    seed_dir = run_dir / f"seed{cfg.seed}"
    weights = seed_dir / f"{stage}.safetensors"
    state = read_json(seed_dir / "state.json") if (seed_dir / "state.json").is_file() else {"stages": {}}
    if stage not in state["stages"] or not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has not finished its {stage!r} stage ({weights} and its evaluation in "
                                f"{seed_dir / 'state.json'}); continue it with `genneg run {cfg.domain} --preset "
                                f"{cfg.preset} --run-dir {run_dir} --resume`")
    if out.exists() and not force:
        raise ValueError(f"{out} already exists; pass --force to replace it")
    stages = state["stages"]
    model = load_denoiser(domain, replace(cfg, device="cpu"), weights)
    card = _stage_card(out.name, run_dir, seed_dir, stage, stages, domain, cfg, model, weights)
    if sampler is not None and sampler != cfg.sampler:
        base = load_denoiser(domain, replace(cfg, device="cpu"), seed_dir / "base.safetensors")
        card = _resampled(card, domain, sampler, {None: model, "base": base}, keep="run")
    def fill(tmp: Path) -> None:  # the run's report, its data and figures
        for name in ("report.md", "results.json"):
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, tmp / name)
        if (run_dir / "figures").is_dir():
            shutil.copytree(run_dir / "figures", tmp / "figures")

    return _write_folder(out, weights, card, fill)


def _stage_card(name: str, run_dir: Path, seed_dir: Path, stage: str, stages: dict, domain: Domain, cfg: RunConfig,
                model, weights: Path) -> dict:
    cpu = replace(cfg, device="cpu", pretrained_base="")
    base_name = stages.get("base", {}).get("pretrained") or ""
    sessions = TrainSessions.read(run_dir) if (run_dir / "train.json").is_file() else []
    if sessions:
        machines, commits = sorted({s["machine"] for s in sessions}), sorted({s["code_commit"] for s in sessions})
    else:  # a run from before `genneg run` kept session records: what the export finds, said as such
        from .curve import code_commit, machine

        here = re.sub(r", \d+ torch threads", "", machine(cfg.device))  # the run's threads are not known
        machines = [f"{here} (recorded at export: the run kept no session record)"]
        commits = [f"{code_commit()} (at export)"]
    ours, base = stages[stage]["metrics"], stages["base"]["metrics"]
    metrics = {"stage": stage, "split": "test", "num_samples": cfg.eval.num_samples, "num_nll": cfg.eval.num_nll,
               "infraction": ours["infraction"], "seconds_per_1000": ours["seconds_per_1000"],
               "base": {"infraction": base["infraction"], "seconds_per_1000": base["seconds_per_1000"]}}
    if "nll" in ours:
        metrics["nll"] = _with_interval(ours["nll"])
    if "nll" in base:
        metrics["base"]["nll"] = _with_interval(base["nll"])
    if "domain" in ours:
        metrics["domain"], metrics["base"]["domain"] = ours["domain"], base.get("domain", {})
    rounds = [{"stage": k, **v["round"]} for k, v in stages.items() if k.startswith("round") and "round" in v]
    return {
        **_identity(name, domain, cpu, model, weights), "stage": stage,
        "from": {"base": base_name, "base_sha256": sha256_file(seed_dir / "base.safetensors")},
        "training": {"steps": cfg.distil.steps, "batch_size": cfg.distil.batch_size, "train": cfg.to_dict()["distil"],
                     "wall_seconds": sum(v.get("seconds", 0.0) for v in stages.values()),
                     "sessions": max(len(sessions), 1), "machine": machines, "code_commit": commits},
        "genneg": {"config": cfg.to_dict()["genneg"], "rounds": rounds},
        "metrics": {**metrics, "step": cfg.distil.steps},
        "reproduce": _run_command(cfg, domain.presets(), base_name, name, stage),
    }


def _run_command(cfg: RunConfig, presets: dict[str, RunConfig], base: str, name: str, stage: str) -> str:
    """The commands that rerun Gen-neG from ``base`` and write ``pretrained/<name>`` from its ``stage``."""
    args = _preset_args(cfg, presets) + ([f"--base {base}"] if base else [])
    run_dir = f"runs/{name}"
    run = " ".join(["genneg run", cfg.domain, "--preset", cfg.preset, *args, "--run-dir", run_dir])
    return f"{run} && genneg export-model --run-dir {run_dir} --stage {stage} --out pretrained/{name}"


def _stage_markdown(card: dict) -> str:
    """``card.md`` of a distilled Gen-neG model: the run's held-out rows of the base and of this model side by side."""
    a, d, t, m, g = card["architecture"], card["data"], card["training"], card["metrics"], card["genneg"]
    ours, base = m["infraction"], m["base"]["infraction"]
    rows = [f"| invalid (any reason) | {_pct(base['total'])} | {_pct(ours['total'])} |"]
    rows += [f"| {k} | {_pct(base['reasons'][k])} | {_pct(r)} |" for k, r in ours["reasons"].items()]
    if "nll" in m and "nll" in m["base"]:
        diff = m["nll"].get("diff_base")
        paired = f" (paired difference {diff['mean']:+.3f} ± {diff['se']:.3f} s.e.)" if diff else ""
        rows.append(f"| NLL bound (nats) | {m['base']['nll']['mean']:.3f} ± {m['base']['nll']['se']:.3f} | "
                    f"{m['nll']['mean']:.3f} ± {m['nll']['se']:.3f}{paired} |")
    rounds = [f"- {r['stage']}: {r['n']:,} samples, α = {r['alpha']:.3f} [{r['alpha_ci'][0]:.3f}, "
              f"{r['alpha_ci'][1]:.3f}]" + (f", skipped: {r['skipped']}" if r.get("skipped") else "")
              for r in g["rounds"]]
    run = ""
    if "run" in m:  # exported with another sampler than the run's
        r = m["run"]
        run = (f" With the run's sampler `{_sampler_name(r['sampler'])}`: base "
               f"{_pct(r['base']['infraction']['total'])}, {card['name']} {_pct(r['infraction']['total'])} invalid.")
    hours, minutes = divmod(round(t["wall_seconds"] / 60), 60)
    name, base_name = card["name"], card["from"]["base"] or "a base trained in the run"
    handoff = card["config"]["genneg"].get("distil_sigma_min") or 0.0
    cost = "One network (the cost of the base per sample)" if not handoff else (
        f"A student network for σ ≥ {handoff:g} that hands the smaller σ back to the base network (both in "
        "`model.safetensors`; one network evaluation per sampler step, the cost of the base per sample),")
    return "\n".join([
        f"# {name}: a `{card['domain']}` Gen-neG model, distilled (preset `{card['preset']}`)", "",
        f"{cost} distilled from `{base_name}` guided by "
        f"{len(g['rounds'])} Gen-neG classifier round(s), by `genneg run`. See `docs/pretrained.md` for the fields "
        "of `card.json`; `report.md` beside this file is the run's report.", "",
        "## Made from", "",
        f"- base: `{base_name}` (weights sha256 `{card['from']['base_sha256'][:16]}…`)",
        f"- data: `{json.dumps(d['config'])}`, {d['train_rows']:,} training rows (train split sha256 "
        f"`{d['train_sha256'][:16]}…`)",
        f"- network: `{a['network']}` `{json.dumps(a['net'])}`, {a['parameters']:,} parameters",
        *rounds,
        f"- distilled: {t['steps']:,} steps of batch {t['batch_size']}, lr {t['train']['lr']}",
        f"- {hours} h {minutes:02d} min of wall time (every stage with its evaluation) on {'; '.join(t['machine'])}",
        f"- code commit {', '.join(t['code_commit'])}", "",
        "## Reproduce", "", "```bash", card["reproduce"], "```", "",
        "## Measured (held-out)", "",
        f"{m['num_samples']:,} samples on the {m['split']} split's conditions, the same conditions and sampler noise "
        "for both columns (95 % Wilson intervals); NLL bound of "
        f"{m['num_nll']:,} held-out points, paired. Sampler: `{_sampler_name(card['config']['sampler'])}`, what "
        "`genneg sample` and `genneg eval` use from this folder (`--sampler` picks another)." + run, "",
        f"| metric | base | {name} |", "|---|---|---|", *rows, "",
        "## Use", "", "```bash",
        f"genneg sample --run-dir pretrained/{name} --n 1000 --out samples.npz",
        f"genneg eval --run-dir pretrained/{name}", "```", "",
    ])


# ------------------------------------------------------------------------------------------------- reading


def resolve_folder(path: str | Path) -> Path:
    """``path`` as given, else relative to the project's root (where ``pretrained/`` lives); never downloaded."""
    p = Path(path)
    if p.is_dir():
        return p
    root = Path(__file__).resolve().parents[1]
    if not p.is_absolute() and (root / p).is_dir():
        return root / p
    raise FileNotFoundError(f"no pretrained model folder {path} (looked in {Path.cwd()} and {root}); nothing is "
                            "downloaded: write one with `genneg export-model` from a finished `genneg train` run")


def is_model_folder(path: str | Path) -> bool:
    return (Path(path) / CARD).is_file()


def card_stage(card: dict) -> str:
    """The stage a model folder holds: ``base`` (from ``genneg train``) or ``distilled`` (from ``genneg run``)."""
    return card.get("stage", "base")


def read_card(folder: str | Path) -> dict:
    folder = Path(folder)
    card = read_json(folder / CARD)
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{folder / CARD} has card format {card.get('format')!r}; this code reads format "
                         f"{CARD_FORMAT}")
    missing = [k for k in ("domain", "architecture", "data", "weights", "config", "reproduce") if k not in card]
    if missing:
        raise ValueError(f"{folder / CARD} lacks the field(s) {missing}")
    return card


def card_config(card: dict) -> RunConfig:
    """The run config the model was trained with (device cpu)."""
    return config_from_dict(RunConfig, card["config"])


def verify_weights(folder: str | Path, card: dict) -> Path:
    """The weights file, after checking its sha256 against the card's."""
    path = Path(folder) / card["weights"]["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; restore it or retrain: {card['reproduce']}")
    digest = sha256_file(path)
    if digest != card["weights"]["sha256"]:
        raise ValueError(f"{path} is corrupted or was replaced: its sha256 {digest[:16]}… is not the card's "
                         f"{card['weights']['sha256'][:16]}…; restore it (e.g. `git checkout -- {path}`) or retrain: "
                         f"{card['reproduce']}")
    return path


def check_card(card: dict, domain: Domain, cfg: RunConfig, folder: str | Path = "", *, data: bool = True) -> None:
    """Refuses a card whose domain, data or architecture differs from what the current code builds for ``cfg``.
    ``data=False`` skips the one check that reads the training data (its hash), for where it is not generated.

    Raises:
        ValueError: naming the first field that differs, both values and the command that retrains the model.
    """
    def refuse(field: str, theirs, ours, why: str):
        raise ValueError(f"{folder or 'the pretrained model'}: the card's {field} ({theirs}) does not match {why} "
                         f"({ours}); retrain it: {card['reproduce']}")

    if card["domain"] != cfg.domain:
        refuse("domain", card["domain"], cfg.domain, "this run's domain")
    if card["data"]["config"] != dict(cfg.data):
        refuse("data.config", card["data"]["config"], dict(cfg.data), "this run's data config")
    if card["architecture"]["net"] != dict(cfg.net):
        refuse("architecture.net", card["architecture"]["net"], dict(cfg.net), "this run's net config")
    cpu = replace(cfg, device="cpu")
    arch = architecture(domain, cpu)
    for key in ("sigma_data", "network", "sha256"):
        if card["architecture"][key] != arch[key]:
            refuse(f"architecture.{key}", card["architecture"][key], arch[key], "the current code's denoiser")
    if not data:
        return
    data = data_identity(domain, cpu)
    if card["data"]["train_sha256"] != data["train_sha256"]:
        refuse("data.train_sha256", card["data"]["train_sha256"][:16] + "…", data["train_sha256"][:16] + "…",
               "the training data the current code makes")


def load_pretrained(folder: str | Path, domain: Domain, cfg: RunConfig, *, data: bool = True):
    """The pretrained base denoiser of ``folder`` for a run of ``cfg`` (on ``cfg.device``), after every check:
    the card against the current code (``check_card``), the weights' sha256, and the probe outputs (on test
    conditions). ``data=False`` skips the training data's hash, for a domain opened without its train split (the
    traffic demo opens the held-out networks only)."""
    folder = resolve_folder(folder)
    card = read_card(folder)
    check_card(card, domain, cfg, folder, data=data)
    path = verify_weights(folder, card)
    model = load_denoiser(domain, cfg, path)
    ours, theirs = np.array(probe(model, domain, cfg)), np.array(card["probe"])
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=1e-3, atol=1e-4):
        raise ValueError(f"{folder}: the current code computes other outputs from these weights than when the card "
                         f"was written (probe {np.round(ours, 5).tolist()} vs {np.round(theirs, 5).tolist()}); "
                         f"retrain it: {card['reproduce']}")
    return model


def install_base(folder: str | Path, domain: Domain, cfg: RunConfig, dest: str | Path):
    """``load_pretrained``, then a copy of its weights at ``dest`` (a run's ``base.safetensors``); returns the
    denoiser."""
    folder = resolve_folder(folder)
    model = load_pretrained(folder, domain, cfg)
    src = folder / read_card(folder)["weights"]["file"]
    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))
    return model
