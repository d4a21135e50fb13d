"""Command-line arguments turned into what the library takes: a config, a device, a loaded stage."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path


def _parse_value(text: str):
    """A --set value: JSON if it parses (numbers, true/false, quoted strings, lists), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def resolve_config(domain_name: str, preset: str, sets: list[str], seed: int | None, device: str, domain_path=None):
    from genneg.config import override
    from genneg.domain import get_domain

    presets = get_domain(domain_name, domain_path=domain_path).presets()
    if preset not in presets:
        raise SystemExit(f"error: unknown preset {preset!r} for domain {domain_name!r}; choose from {sorted(presets)}")
    cfg = presets[preset]
    for item in sets or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"error: --set expects KEY=VALUE, got {item!r}")
        try:
            cfg = override(cfg, key.strip(), _parse_value(value))
        except (ValueError, TypeError) as e:
            raise SystemExit(f"error: --set {item}: {e}") from None
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    return replace(cfg, device=device)


def resolve_device(name: str) -> str:
    """``--device`` resolved: "auto" is CUDA when there is a GPU; "cuda" without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device must be cpu, cuda or auto, got {name!r}")
    return name


def with_batch_size(cfg, batch_size: int | None):
    """``cfg`` with ``--batch-size`` (rows per sampler call) applied."""
    if batch_size is None:
        return cfg
    if batch_size < 1:
        raise SystemExit(f"error: --batch-size must be >= 1, got {batch_size}")
    return replace(cfg, sampler=replace(cfg.sampler, batch_size=batch_size))


def sampler_arg(text: str) -> tuple[str, int | None]:
    """``--sampler KIND[:STEPS]`` → ``(kind, steps or None)``; an ``argparse`` type, so a bad value is refused
    before anything loads."""
    import argparse
    from typing import get_args

    from genneg.choices import SamplerKind

    kind, _, steps = text.partition(":")
    kinds = get_args(SamplerKind)
    if kind not in kinds or (steps and not (steps.isdigit() and int(steps) >= 1)):
        raise argparse.ArgumentTypeError(f"reads KIND[:STEPS] with KIND one of {', '.join(kinds)} and STEPS >= 1 "
                                         f"(e.g. stochastic:32), got {text!r}")
    return kind, int(steps) if steps else None


def sampling_config(args, cfg):
    """``cfg`` with a stage command's ``--batch-size`` and ``--sampler`` applied."""
    return with_sampler(with_batch_size(cfg, args.batch_size), args.sampler)


def with_sampler(cfg, sampler: tuple[str, int | None] | None):
    """``cfg`` with ``--sampler`` applied (``sampler_arg``'s value; the run's step count when it names none)."""
    if sampler is None:
        return cfg
    kind, steps = sampler
    return replace(cfg, sampler=replace(cfg.sampler, kind=kind, steps=steps or cfg.sampler.steps))


def sampler_tag(cfg) -> str:
    """A sampler's short name for file names and tables, e.g. ``stochastic32``."""
    return f"{cfg.sampler.kind}{cfg.sampler.steps}"


def set_threads(n: int | None) -> None:
    """``--threads``: torch's intra-op threads for this process (default: torch's choice)."""
    if n is None:
        return
    if n < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)


def base_arg(text: str) -> str:
    """``--base``: a pretrained folder, or "none" to train the base even when the preset names one."""
    return "" if text == "none" else text


def load_run_config(run_dir: Path):
    from genneg.checkpoint import read_json
    from genneg.config import RunConfig, config_from_dict

    path = run_dir / "config.json"
    if not path.is_file():
        raise SystemExit(f"error: {run_dir} holds no config.json; is it a genneg run folder?")
    return config_from_dict(RunConfig, read_json(path))


def stage_of(args):
    """``(cfg, domain, denoiser, folder)`` of ``--stage`` in ``--run-dir``; folder None for a pretrained model."""
    from genneg.stages import default_stage, load_stage

    args.stage = args.stage or default_stage(args.run_dir)  # named in files and logs
    try:
        return load_stage(args.run_dir, args.stage, seed=args.run_seed, domain_path=args.domain_path,
                          device=args.device)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
