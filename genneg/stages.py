"""The denoiser of any stage of any folder genneg writes, for ``genneg sample`` and ``genneg eval``.

Folders: a pretrained model folder (``genneg.pretrained``; its one stage, ``base`` or ``distilled``), a
``genneg train`` run (a ``<stage>.safetensors`` beside its ``config.json``), and a ``genneg run`` folder or one of
its ``seed<S>/`` folders,
whose stages are ``base``, ``round1`` … ``roundK`` (the base guided by classifiers 1..k, as the run evaluated it),
``distilled``, and the ablations ``no_is``, ``time_independent`` and ``penalty``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from .checkpoint import read_json
from .config import RunConfig, config_from_dict
from .domain import Domain

__all__ = ["load_stage", "run_stages", "default_stage"]

_ROUND = re.compile(r"round([1-9][0-9]*)")
_SEED = re.compile(r"seed([0-9]+)")


def run_stages(cfg: RunConfig) -> list[str]:
    """The stages of a ``genneg run`` seed that load as one denoiser."""
    extra = [b for b in ("no_is", "time_independent", "penalty") if b in cfg.genneg.baselines]
    return ["base", *[f"round{k}" for k in range(1, cfg.genneg.rounds + 1)], "distilled", *extra]


def default_stage(run_dir: str | Path) -> str:
    """The stage ``load_stage`` loads when none is named: a pretrained folder's own (its card's), else ``base``."""
    from .pretrained import card_stage, is_model_folder, read_card

    return card_stage(read_card(run_dir)) if is_model_folder(run_dir) else "base"


def load_stage(run_dir: str | Path, stage: str | None = None, *, seed: int | None = None, domain_path=None,
               device: str = "cpu"):
    """``(cfg, domain, denoiser, folder)`` of ``stage`` in ``run_dir``, the denoiser on ``device`` in eval mode;
    ``folder`` is where the stage's files live (the seed folder of a ``genneg run``), None for a pretrained model.

    Args:
        stage: default: a pretrained folder's one stage, else ``base``.
        seed: which seed of a ``genneg run`` folder (default: the run's first); ignored for other folders.

    Raises:
        FileNotFoundError: ``run_dir`` is no genneg folder, or the stage has not been trained there.
        ValueError: an unknown stage (the message lists the folder's stages), or a refused pretrained model.
    """
    from .domain import get_domain
    from .pretrained import card_config, card_stage, is_model_folder, load_pretrained, read_card

    run_dir = Path(run_dir)
    if is_model_folder(run_dir):
        card = read_card(run_dir)
        if (stage or card_stage(card)) != card_stage(card):
            raise ValueError(f"{run_dir} is a pretrained model folder: its only stage is {card_stage(card)!r}, not "
                             f"{stage!r}")
        cfg = replace(card_config(card), device=device)
        domain = get_domain(cfg.domain, domain_path=domain_path, **cfg.data)
        return cfg, domain, load_pretrained(run_dir, domain, cfg), None
    stage = stage or "base"
    seed_dir, cfg = _seed_dir(run_dir, seed)
    cfg = replace(cfg, device=device)
    domain = get_domain(cfg.domain, domain_path=domain_path, **cfg.data)
    if seed_dir is None:  # a `genneg train` run: every stage is a file beside config.json
        hint = "train it first, or pick another --stage"
        return cfg, domain, _denoiser(domain, cfg, run_dir / f"{stage}.safetensors", hint), run_dir
    return cfg, domain, _run_stage(seed_dir, stage, domain, cfg), seed_dir


def _seed_dir(run_dir: Path, seed: int | None) -> tuple[Path | None, RunConfig]:
    """The seed folder (None for a `genneg train` run) and the config with that seed."""
    if (run_dir / "config.json").is_file():
        cfg = config_from_dict(RunConfig, read_json(run_dir / "config.json"))
        seed = cfg.seed if seed is None else seed
        if (run_dir / f"seed{seed}").is_dir():
            return run_dir / f"seed{seed}", replace(cfg, seed=seed)
        if any(_SEED.fullmatch(p.name) for p in run_dir.iterdir() if p.is_dir()):
            raise FileNotFoundError(f"{run_dir} has no seed{seed}/; its seeds: "
                                    f"{sorted(p.name for p in run_dir.iterdir() if _SEED.fullmatch(p.name))}")
        return None, cfg
    m = _SEED.fullmatch(run_dir.name)
    if m and (run_dir.parent / "config.json").is_file():
        cfg = config_from_dict(RunConfig, read_json(run_dir.parent / "config.json"))
        return run_dir, replace(cfg, seed=int(m.group(1)))
    raise FileNotFoundError(f"{run_dir} holds no config.json or card.json; is it a genneg run folder or a "
                            "pretrained model folder?")


def _denoiser(domain: Domain, cfg: RunConfig, path: Path, hint: str):
    from .models import load_denoiser

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist ({hint})")
    return load_denoiser(domain, cfg, path)


def _run_stage(seed_dir: Path, stage: str, domain: Domain, cfg: RunConfig):
    from .baselines import on_denoised, penalty_guidance
    from .genneg import load_classifier, stack

    stages = run_stages(cfg)
    if stage not in stages:
        raise ValueError(f"unknown stage {stage!r} for {seed_dir}; choose from {stages}")
    hint = "the run has not reached it: continue it with `genneg run ... --resume`"
    if stage == "distilled":
        return _denoiser(domain, cfg, seed_dir / "distilled.safetensors", hint)
    base = _denoiser(domain, cfg, seed_dir / "base.safetensors", hint)
    if stage == "base":
        return base
    if stage == "penalty":
        return penalty_guidance(base, domain, cfg)
    state = read_json(seed_dir / "state.json") if (seed_dir / "state.json").is_file() else {"stages": {}}
    if stage not in state["stages"]:
        raise FileNotFoundError(f"{seed_dir}: stage {stage!r} has not finished ({hint})")
    if stage == "no_is":
        return stack(base, [load_classifier(domain, cfg, seed_dir / "no_is.safetensors", base)], cfg.genneg)
    if stage == "time_independent":
        round1 = seed_dir / "classifier1.safetensors"
        return on_denoised(base, load_classifier(domain, cfg, seed_dir / "time_independent.safetensors", base),
                           load_classifier(domain, cfg, round1, base) if round1.is_file() else None, cfg.genneg)
    k = int(_ROUND.fullmatch(stage).group(1))
    classifiers = [load_classifier(domain, cfg, seed_dir / f"classifier{j}.safetensors", base) for j in range(1, k + 1)
                   if not state["stages"][f"round{j}"]["round"]["skipped"]]
    return stack(base, classifiers, cfg.genneg)
