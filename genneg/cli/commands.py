"""What each ``genneg`` subcommand does: read its arguments, build a config, call the library, say what it wrote."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .resolve import (base_arg, load_run_config, resolve_config, sampler_tag, sampling_config, set_threads, stage_of,
                      with_batch_size, with_sampler)
from .ui import StatsLog, TqdmUI, curve_hook, format_metrics, main_only, say, train_callback


def cmd_train(args):
    from tqdm import tqdm

    from genneg import distributed
    from genneg.checkpoint import state_step, write_json
    from genneg.curve import LearningCurve, TrainSessions
    from genneg.domain import get_domain
    from genneg.models import fit_base

    run_dir = Path(args.run_dir)
    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    if (run_dir / "config.json").exists() and not args.resume:
        raise SystemExit(f"error: {run_dir} already holds a run; pass --resume to continue it or choose another folder")
    if args.resume and (run_dir / "config.json").exists():
        cfg = replace(load_run_config(run_dir), device=cfg.device)
    set_threads(args.threads)
    every = cfg.base.checkpoint_every if args.eval_every is None else args.eval_every
    distributed.barrier()  # every rank has looked before rank 0 writes
    write_json(run_dir / "config.json", cfg.to_dict())
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    curve = LearningCurve(run_dir, domain, cfg, domain.oracle(), every)
    state = run_dir / "base.state.pt"
    start = state_step(state) if args.resume and state.exists() else 0
    log, sessions = StatsLog(run_dir), TrainSessions(run_dir, args.threads, cfg.device)
    with tqdm(total=cfg.base.steps, initial=start, desc="base", smoothing=0, disable=main_only(args.quiet)) as bar:
        hook = curve_hook(curve, sessions, log, bar)
        ema = fit_base(domain, cfg, run_dir, resume=args.resume, callback=train_callback(bar, log, "base"),
                       on_step=hook)
    if (curve.last() or {}).get("step") != cfg.base.steps:  # resumed after the end, or trained before curves
        hook(cfg.base.steps, ema)
    sessions.update(cfg.base.steps)
    say(f"wrote {run_dir / 'base.safetensors'} and its learning curve {run_dir / 'curve.png'}")
    say(format_metrics(f"base, step {cfg.base.steps}", curve.last()))


def cmd_sample(args):
    from tqdm import tqdm

    from genneg.distributed import executor, labelling_oracle
    from genneg.exporting import export_samples, exports
    from genneg.generate import sample_to_disk

    set_threads(args.threads)
    cfg, domain, denoiser, _ = stage_of(args)
    cfg = sampling_config(args, cfg)
    if args.n < 1:
        raise SystemExit(f"error: --n must be >= 1, got {args.n}")
    write = export_samples if exports(domain, args.out) else sample_to_disk
    with executor(args.workers, args.dask_scheduler) as ex, \
            tqdm(total=args.n, desc=f"sample {args.stage}", disable=main_only(args.quiet)) as bar:
        out = write(denoiser, domain, args.n, cfg.sampler, args.out,
                    oracle=labelling_oracle(domain.oracle(), ex), split=args.split, seed=args.seed,
                    device=cfg.device, callback=bar.update)
    say(f"wrote {args.n} samples to {out['path']} ({100 * out['invalid'] / max(args.n - out['undefined'], 1):.2f} % "
        f"invalid" + (f", {out['undefined']} undefined" if out["undefined"] else "") + ")")


def cmd_eval(args):
    from genneg.checkpoint import write_json
    from genneg.distributed import executor, labelling_oracle
    from genneg.evaluate import EvalData, evaluate_denoiser
    from genneg.rng import stream_seed

    set_threads(args.threads)
    cfg, domain, denoiser, folder = stage_of(args)
    cfg = sampling_config(args, cfg)
    data = EvalData(domain, cfg, split=args.split)  # the run's eval streams: another split, the same noise
    with executor(args.workers, args.dask_scheduler) as ex:
        metrics, _, _ = evaluate_denoiser(denoiser, domain, cfg, data, labelling_oracle(domain.oracle(), ex),
                                          seed=stream_seed(cfg.seed, "eval"))
    metrics["split"], metrics["sampler"] = args.split, {"kind": cfg.sampler.kind, "steps": cfg.sampler.steps}
    name = (f"eval_{args.stage}" + ("" if args.split == "test" else f"_{args.split}")
            + ("" if args.sampler is None else f"_{sampler_tag(cfg)}"))
    out = Path(args.out) if args.out else (folder / f"{name}.json" if folder is not None else None)
    if out is not None:  # a pretrained folder is never written to unless --out says so
        write_json(out, metrics)
    if folder is not None:
        StatsLog(folder).write(stage=name, **{"metrics": metrics})
    say(format_metrics(f"{args.stage} ({args.split}, {sampler_tag(cfg)})", metrics))


def cmd_export_model(args):
    from genneg.domain import get_domain
    from genneg.pretrained import read_card, write_model_folder, write_stage_folder

    run_dir = Path(args.run_dir)
    cfg = load_run_config(run_dir)
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    suffix = "-genneg" if args.stage else ""
    out = Path(args.out or f"pretrained/{cfg.domain}-{cfg.preset}{suffix}")
    sampler = with_sampler(cfg, args.sampler).sampler  # the run's when --sampler is not given
    if args.stage:
        write_stage_folder(run_dir, out, domain, cfg, stage=args.stage, force=args.force, sampler=sampler)
    else:
        write_model_folder(run_dir, out, domain, cfg, domain.presets(), force=args.force, sampler=sampler)
    card = read_card(out)
    extra = "report.md" if args.stage else "curve.png"
    print(f"wrote {out}/ (model.safetensors sha256 {card['weights']['sha256'][:16]}…, card.json, card.md, {extra})")
    print(format_metrics(f"{out.name}, {args.stage or 'step'} {card['metrics']['step']}", card["metrics"]))


def cmd_data(args):
    from genneg.distributed import executor
    from genneg.domain import get_domain

    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    if not hasattr(domain, "prepare_data"):
        raise SystemExit(f"error: domain {cfg.domain!r} generates its data on the fly; nothing to prepare")
    progress = None if args.quiet else print
    only = {}
    if args.split:  # some splits only: the domain must know how
        import inspect

        if "splits" not in inspect.signature(domain.prepare_data).parameters:
            raise SystemExit(f"error: domain {cfg.domain!r} prepares all its splits at once; --split is not "
                             "supported for it")
        only = {"splits": tuple(args.split)}
    if args.dask_scheduler:  # the domain's jobs go to the cluster
        with executor(dask_scheduler=args.dask_scheduler) as ex:
            path = domain.prepare_data(workers=args.workers, progress=progress, executor=ex, **only)
    else:  # the domain's own pool of --workers processes
        path = domain.prepare_data(workers=args.workers, progress=progress, **only)
    print(f"data ready: {path}" + (f" (split {', '.join(only['splits'])})" if only else ""))


def cmd_demo(args):
    import importlib

    set_threads(args.threads)
    try:
        demo = importlib.import_module(f"genneg.domains.{args.domain}.demo")
    except ModuleNotFoundError as e:
        if e.name not in (f"genneg.domains.{args.domain}.demo", f"genneg.domains.{args.domain}"):
            raise
        raise SystemExit(f"error: domain {args.domain!r} has no demo (a module genneg.domains.{args.domain}.demo "
                         "with run_demo); `genneg demo traffic` is one") from None
    models = args.model or list(demo.DEFAULT_MODELS)
    optional = args.optional_model if args.optional_model is not None else (
        list(demo.OPTIONAL_MODELS) if args.model is None else [])
    out = args.out or f"runs/demo-{args.domain}"
    report = demo.run_demo(models, out, optional=optional, num_samples=args.n, handoff=args.handoff,
                           columns=args.columns, seconds=args.seconds, seed=args.seed, workers=args.workers,
                           device=args.device, progress=None if args.quiet else print)
    say(report.read_text())
    say(f"report: {report}  (demo.json and scenes.png beside it)")


def cmd_presets(args):
    from genneg.domain import get_domain

    for name, cfg in get_domain(args.domain, domain_path=args.domain_path).presets().items():
        print(f"{name}: {json.dumps(cfg.to_dict(), default=str)}")


def cmd_domains(args):
    from genneg.domain import available_domains

    print("\n".join(available_domains()))


def cmd_run(args):
    import torch

    from genneg import distributed
    from genneg.curve import TrainSessions
    from genneg.distributed import executor
    from genneg.domain import get_domain
    from genneg.run import run

    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    run_dir = Path(args.run_dir or f"runs/{args.domain}-{args.preset}")
    if args.resume and (run_dir / "config.json").exists():
        cfg = replace(load_run_config(run_dir), device=cfg.device)
        if args.base is not None and base_arg(args.base) != cfg.pretrained_base:
            raise SystemExit(f"error: {run_dir} was started with base {cfg.pretrained_base or 'trained in the run'!r}; "
                             "resume it without --base, or start another folder")
    elif args.base is not None:
        cfg = replace(cfg, pretrained_base=base_arg(args.base))
    cfg = with_batch_size(cfg, args.batch_size)
    if args.seeds < 1:
        raise SystemExit("error: --seeds must be >= 1")
    if args.workers > 1 and (distributed.is_distributed() or args.oracle_workers > 1 or args.dask_scheduler):
        raise SystemExit("error: --workers (seeds in parallel processes) cannot be combined with torchrun, "
                         "--oracle-workers or --dask-scheduler; run the seeds one after another")
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    names = args.oracle.split(",") if args.oracle else None
    domain.oracle(names)  # fail early on unknown oracle names
    if cfg.pretrained_base:  # fail early on a missing, corrupted or mismatched pretrained base
        from genneg.pretrained import load_pretrained

        load_pretrained(cfg.pretrained_base, domain, replace(cfg, device="cpu"))
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "config.json").exists() and not args.resume:
        raise SystemExit(f"error: {run_dir} already holds a run; pass --resume to continue it or choose another folder")
    sessions = TrainSessions(run_dir, torch.get_num_threads(), cfg.device)  # machine and commit, for model cards
    if distributed.is_main():
        sessions.update(0)
    try:
        with executor(args.oracle_workers, args.dask_scheduler) as ex:
            agg = run(domain, cfg, run_dir, seeds=args.seeds, resume=args.resume,
                      ui=TqdmUI(StatsLog(run_dir), main_only(args.quiet)), oracle_names=names, workers=args.workers,
                      domain_path=args.domain_path, **({"executor": ex} if ex is not None else {}))
    except FileExistsError as e:
        raise SystemExit(f"error: {e}") from None
    if distributed.is_main():
        sessions.update(0)
    say((run_dir / "report.md").read_text())
    say(f"report: {run_dir / 'report.md'}  (results.json and figures/ beside it; summed stage time "
        f"{agg['wall_seconds'] / 60:.1f} min)")


def cmd_new_domain(args):
    from genneg.scaffold import scaffold_domain

    try:
        paths = scaffold_domain(args.name, args.dir)
    except FileExistsError as e:
        raise SystemExit(f"error: {e}") from None
    package = Path(args.dir) / args.name
    print("\n".join(f"wrote {p}" for p in paths))
    print(f"next: pytest {Path(args.dir) / 'tests'}  and  genneg run {args.name} --domain-path {package} --preset tiny")
