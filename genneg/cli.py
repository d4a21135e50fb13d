"""The ``genneg`` command. ``main`` only parses, builds a config and calls the library."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from .cli_ui import StatsLog, TqdmUI, curve_hook, format_metrics, train_callback
from .cli_ui import main_only as _main_only
from .cli_ui import say as _say

EXAMPLES = """
examples:
  genneg run toy --preset default --seeds 3 --run-dir runs/toy     # the whole method + baselines + report
  genneg train toy --preset tiny --run-dir runs/toy-tiny           # base model only
  genneg train toy --preset tiny --run-dir runs/toy-tiny --resume  # continue a killed run
  genneg sample --run-dir runs/toy-tiny --n 1000 --out samples.npz
  genneg sample --run-dir runs/toy-tiny --n 1000000 --batch-size 8192 --workers 2 --out big/   # streamed .npy files
  torchrun --nproc_per_node 2 -m genneg train toy --preset tiny --run-dir runs/ddp           # DDP, any command
  genneg eval --run-dir runs/toy-tiny
  genneg train toy --preset default --run-dir runs/toy-default-base --eval-every 500 --threads 2  # + learning curve
  genneg export-model --run-dir runs/toy-default-base --out pretrained/toy-default            # weights + card
  genneg run toy --preset default --base pretrained/toy-default      # start Gen-neG from a pretrained base
  genneg sample --run-dir runs/toy --stage round2 --n 1000 --out round2.npz   # any stage of a run, stacked too
  genneg presets toy                                               # list presets and their settings
  genneg train toy --preset tiny --set base.steps=500 --set data.shape=\\"rings\\"
"""


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


def _device(name: str) -> str:
    """``--device`` resolved: "auto" is CUDA when there is a GPU; "cuda" without one is an error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device must be cpu, cuda or auto, got {name!r}")
    return name


def _sampler(cfg, batch_size: int | None):
    """``cfg`` with ``--batch-size`` (rows per sampler call) applied."""
    if batch_size is None:
        return cfg
    if batch_size < 1:
        raise SystemExit(f"error: --batch-size must be >= 1, got {batch_size}")
    return replace(cfg, sampler=replace(cfg.sampler, batch_size=batch_size))


def load_run_config(run_dir: Path):
    from genneg.checkpoint import read_json
    from genneg.config import RunConfig, config_from_dict

    path = run_dir / "config.json"
    if not path.is_file():
        raise SystemExit(f"error: {run_dir} holds no config.json; is it a genneg run folder?")
    return config_from_dict(RunConfig, read_json(path))


# ------------------------------------------------------------------------------------------------------- commands


def _threads(n: int | None) -> None:
    """``--threads``: torch's intra-op threads for this process (default: torch's choice)."""
    if n is None:
        return
    if n < 1:
        raise SystemExit(f"error: --threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(n)


def cmd_train(args):
    from tqdm import tqdm

    from genneg import distributed
    from genneg.checkpoint import load_state, write_json
    from genneg.curve import LearningCurve, TrainSessions
    from genneg.domain import get_domain
    from genneg.models import fit_base

    run_dir = Path(args.run_dir)
    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    if (run_dir / "config.json").exists() and not args.resume:
        raise SystemExit(f"error: {run_dir} already holds a run; pass --resume to continue it or choose another folder")
    if args.resume and (run_dir / "config.json").exists():
        cfg = replace(load_run_config(run_dir), device=cfg.device)
    _threads(args.threads)
    every = cfg.base.checkpoint_every if args.eval_every is None else args.eval_every
    distributed.barrier()  # every rank has looked before rank 0 writes
    write_json(run_dir / "config.json", cfg.to_dict())
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    curve = LearningCurve(run_dir, domain, cfg, domain.oracle(), every)
    state = run_dir / "base.state.pt"
    start = int(load_state(state)["step"]) if args.resume and state.exists() else 0
    log, sessions = StatsLog(run_dir), TrainSessions(run_dir, args.threads, cfg.device)
    with tqdm(total=cfg.base.steps, initial=start, desc="base", smoothing=0, disable=_main_only(args.quiet)) as bar:
        hook = curve_hook(curve, sessions, log, bar)
        ema = fit_base(domain, cfg, run_dir, resume=args.resume, callback=train_callback(bar, log, "base"),
                       on_step=hook)
    if (curve.last() or {}).get("step") != cfg.base.steps:  # resumed after the end, or trained before curves
        hook(cfg.base.steps, ema)
    sessions.update(cfg.base.steps)
    _say(f"wrote {run_dir / 'base.safetensors'} and its learning curve {run_dir / 'curve.png'}")
    _say(format_metrics(f"base, step {cfg.base.steps}", curve.last()))


def _stage_of(args):
    """``(cfg, domain, denoiser, folder)`` of ``--stage`` in ``--run-dir``; folder None for a pretrained model."""
    from genneg.stages import load_stage

    try:
        return load_stage(args.run_dir, args.stage, seed=args.run_seed, domain_path=args.domain_path,
                          device=args.device)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None


def _load_stage(run_dir: Path, stage: str, domain_path=None):
    """``(cfg, domain, denoiser)`` of a stage, on the CPU (``genneg.stages.load_stage``)."""
    from genneg.stages import load_stage

    return load_stage(run_dir, stage, domain_path=domain_path)[:3]


def cmd_sample(args):
    from tqdm import tqdm

    from genneg.distributed import executor, labelling_oracle
    from genneg.exporting import export_samples, exports
    from genneg.generate import sample_to_disk

    _threads(args.threads)
    cfg, domain, denoiser, _ = _stage_of(args)
    cfg = _sampler(cfg, args.batch_size)
    if args.n < 1:
        raise SystemExit(f"error: --n must be >= 1, got {args.n}")
    write = export_samples if exports(domain, args.out) else sample_to_disk
    with executor(args.workers, args.dask_scheduler) as ex, \
            tqdm(total=args.n, desc=f"sample {args.stage}", disable=_main_only(args.quiet)) as bar:
        out = write(denoiser, domain, args.n, cfg.sampler, args.out,
                    oracle=labelling_oracle(domain.oracle(), ex), split=args.split, seed=args.seed,
                    device=cfg.device, callback=bar.update)
    _say(f"wrote {args.n} samples to {out['path']} ({100 * out['invalid'] / max(args.n - out['undefined'], 1):.2f} % "
         f"invalid" + (f", {out['undefined']} undefined" if out["undefined"] else "") + ")")


def cmd_eval(args):
    from genneg.checkpoint import write_json
    from genneg.distributed import executor, labelling_oracle
    from genneg.evaluate import EvalData, evaluate_denoiser
    from genneg.rng import stream_seed

    _threads(args.threads)
    cfg, domain, denoiser, folder = _stage_of(args)
    cfg = _sampler(cfg, args.batch_size)
    with executor(args.workers, args.dask_scheduler) as ex:
        metrics, _, _ = evaluate_denoiser(denoiser, domain, cfg, EvalData(domain, cfg),
                                          labelling_oracle(domain.oracle(), ex), seed=stream_seed(cfg.seed, "eval"))
    out = Path(args.out) if args.out else (folder / f"eval_{args.stage}.json" if folder is not None else None)
    if out is not None:  # a pretrained folder is never written to unless --out says so
        write_json(out, metrics)
    if folder is not None:
        StatsLog(folder).write(stage=f"eval_{args.stage}", **{"metrics": metrics})
    _say(format_metrics(args.stage, metrics))


def cmd_export_model(args):
    from genneg.domain import get_domain
    from genneg.pretrained import read_card, write_model_folder

    run_dir = Path(args.run_dir)
    cfg = load_run_config(run_dir)
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    out = Path(args.out or f"pretrained/{cfg.domain}-{cfg.preset}")
    write_model_folder(run_dir, out, domain, cfg, domain.presets(), force=args.force)
    card = read_card(out)
    print(f"wrote {out}/ (model.safetensors sha256 {card['weights']['sha256'][:16]}…, card.json, card.md, curve.png)")
    print(format_metrics(f"{out.name}, step {card['metrics']['step']}", card["metrics"]))


def cmd_data(args):
    from genneg.distributed import executor
    from genneg.domain import get_domain

    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    if not hasattr(domain, "prepare_data"):
        raise SystemExit(f"error: domain {cfg.domain!r} generates its data on the fly; nothing to prepare")
    progress = None if args.quiet else print
    if args.dask_scheduler:  # the domain's jobs go to the cluster
        with executor(dask_scheduler=args.dask_scheduler) as ex:
            path = domain.prepare_data(workers=args.workers, progress=progress, executor=ex)
    else:  # the domain's own pool of --workers processes
        path = domain.prepare_data(workers=args.workers, progress=progress)
    print(f"data ready: {path}")


def cmd_presets(args):
    from genneg.domain import get_domain

    for name, cfg in get_domain(args.domain, domain_path=args.domain_path).presets().items():
        print(f"{name}: {json.dumps(cfg.to_dict(), default=str)}")


def cmd_domains(args):
    from genneg.domain import available_domains

    print("\n".join(available_domains()))


def cmd_run(args):
    from genneg import distributed
    from genneg.distributed import executor
    from genneg.domain import get_domain
    from genneg.run import run

    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    run_dir = Path(args.run_dir or f"runs/{args.domain}-{args.preset}")
    if args.resume and (run_dir / "config.json").exists():
        cfg = replace(load_run_config(run_dir), device=cfg.device)
        if args.base is not None and _base_arg(args.base) != cfg.pretrained_base:
            raise SystemExit(f"error: {run_dir} was started with base {cfg.pretrained_base or 'trained in the run'!r}; "
                             "resume it without --base, or start another folder")
    elif args.base is not None:
        cfg = replace(cfg, pretrained_base=_base_arg(args.base))
    cfg = _sampler(cfg, args.batch_size)
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
    try:
        with executor(args.oracle_workers, args.dask_scheduler) as ex:
            agg = run(domain, cfg, run_dir, seeds=args.seeds, resume=args.resume,
                      ui=TqdmUI(StatsLog(run_dir), _main_only(args.quiet)), oracle_names=names, workers=args.workers,
                      domain_path=args.domain_path, **({"executor": ex} if ex is not None else {}))
    except FileExistsError as e:
        raise SystemExit(f"error: {e}") from None
    _say((run_dir / "report.md").read_text())
    _say(f"report: {run_dir / 'report.md'}  (results.json and figures/ beside it; summed stage time "
         f"{agg['wall_seconds'] / 60:.1f} min)")


def _base_arg(text: str) -> str:
    """``--base``: a pretrained folder, or "none" to train the base even when the preset names one."""
    return "" if text == "none" else text


def cmd_new_domain(args):
    from genneg.scaffold import scaffold_domain

    try:
        paths = scaffold_domain(args.name, args.dir)
    except FileExistsError as e:
        raise SystemExit(f"error: {e}") from None
    package = Path(args.dir) / args.name
    print("\n".join(f"wrote {p}" for p in paths))
    print(f"next: pytest {Path(args.dir) / 'tests'}  and  genneg run {args.name} --domain-path {package} --preset tiny")


# ------------------------------------------------------------------------------------------------------- parser


def scale_options(sp, what: str):
    """--batch-size, --workers and --dask-scheduler of a command that samples and labels."""
    sp.add_argument("--batch-size", type=int, default=None,
                    help="rows per sampler call; bounds memory (default: the run's sampler.batch_size)")
    sp.add_argument("--workers", type=int, default=1,
                    help=f"processes that {what} runs on (default: %(default)s, in this process)")
    sp.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                    help=f"run {what} on this Dask cluster, e.g. tcp://10.0.0.1:8786 (pip install 'genneg[dask]')")


def threads_option(sp):
    sp.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's)")


def stage_options(sp):
    """--run-dir, --stage and --run-seed of a command that loads one stage."""
    sp.add_argument("--run-dir", required=True, help="a `genneg train` or `genneg run` folder, one of its seed<S>/ "
                    "folders, or a pretrained model folder (e.g. pretrained/toy-default)")
    sp.add_argument("--stage", default="base", help="base, round1 .. roundK (the base guided by classifiers 1..k), "
                    "distilled, no_is, time_independent, penalty (default: %(default)s)")
    sp.add_argument("--run-seed", type=int, default=None, help="which seed of a `genneg run` folder (default: its "
                    "first)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genneg", description="Gen-neG: keep diffusion models away from invalid samples.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, domain=True):
        if domain:
            sp.add_argument("domain", help="domain name (see `genneg domains`)")
            sp.add_argument("--preset", default="default", help="named preset of the domain (default: %(default)s)")
            sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. base.steps=500")
            sp.add_argument("--seed", type=int, default=None, help="run seed (default: the preset's)")
        sp.add_argument("--domain-path", default=None, help="a local folder with a domain package (make_domain)")
        sp.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                        help="where networks run; auto = cuda when a GPU is there (default: %(default)s). Under "
                             "torchrun each process takes the GPU of its LOCAL_RANK")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")
        sp.formatter_class = argparse.RawDescriptionHelpFormatter
        sp.epilog = EXAMPLES

    t = sub.add_parser("train", help="train the base denoiser")
    common(t)
    t.add_argument("--run-dir", required=True, help="folder for weights, config and stats.jsonl")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --run-dir")
    t.add_argument("--eval-every", type=int, default=None, metavar="K",
                   help="evaluate the EMA weights on held-out data every K steps into curve.json / curve.png "
                        "(default: base.checkpoint_every; 0: only at the last step, which is always evaluated)")
    threads_option(t)
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export-model", help="write a pretrained model folder (weights, card, curve) from a finished "
                       "`genneg train` run", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    x.add_argument("--run-dir", required=True, help="the finished `genneg train` run")
    x.add_argument("--out", default=None, help="the model folder (default: pretrained/<domain>-<preset>)")
    x.add_argument("--force", action="store_true", help="replace --out if it exists")
    x.add_argument("--domain-path", default=None, help="a local folder with a domain package (make_domain)")
    x.set_defaults(func=cmd_export_model)

    s = sub.add_parser("sample", help="draw samples from a trained stage and label them")
    common(s, domain=False)
    stage_options(s)
    s.add_argument("--num-samples", "--n", dest="n", type=int, default=1000,
                   help="samples to draw (default: %(default)s; under torchrun spell it --num-samples)")
    s.add_argument("--split", default="test", help="split whose conditions to generate on")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="a .npz archive, or a folder of .npy files (any other path); written "
                   "batch by batch, so n is bounded by the disk, not by memory. A suffix the domain exports (e.g. "
                   ".json) is written in the domain's own format with the oracle's verdicts instead")
    threads_option(s)
    scale_options(s, "oracle labelling")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="infraction rate (Wilson interval, per reason) and NLL bound of a stage")
    common(e, domain=False)
    stage_options(e)
    e.add_argument("--out", default=None, help="metrics JSON (default: eval_<stage>.json in the run folder; nothing "
                   "is written into a pretrained model folder)")
    threads_option(e)
    scale_options(e, "oracle labelling")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("run", help="the whole Gen-neG pipeline with baselines, evaluated and reported")
    common(r)
    r.add_argument("--seeds", type=int, default=1, help="independent repetitions (seeds seed..seed+S-1)")
    r.add_argument("--run-dir", default=None, help="default: runs/<domain>-<preset>")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run at the stage where it stopped")
    r.add_argument("--oracle", default=None, help="comma-separated oracle names to guide against (default: the domain's)")
    r.add_argument("--workers", type=int, default=1, help="seeds run in parallel processes (default: %(default)s)")
    r.add_argument("--oracle-workers", type=int, default=1,
                   help="processes that oracle labelling runs on (default: %(default)s, in this process)")
    r.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                   help="run oracle labelling on this Dask cluster, e.g. tcp://10.0.0.1:8786 "
                        "(pip install 'genneg[dask]')")
    r.add_argument("--batch-size", type=int, default=None,
                   help="rows per sampler call; bounds memory (default: the preset's)")
    r.add_argument("--base", default=None, metavar="FOLDER",
                   help="start from this pretrained model folder (e.g. pretrained/toy-default) instead of training "
                        "the base; 'none' trains it (default: the preset's pretrained_base, if it names one)")
    r.set_defaults(func=cmd_run)

    da = sub.add_parser("data", help="generate and cache a domain's data for a preset (e.g. SUMO scenes)")
    common(da)
    da.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    da.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                    help="generate on this Dask cluster instead of local processes (pip install 'genneg[dask]')")
    da.set_defaults(func=cmd_data)

    pr = sub.add_parser("presets", help="list a domain's presets")
    pr.add_argument("domain")
    pr.add_argument("--domain-path", default=None)
    pr.set_defaults(func=cmd_presets)

    d = sub.add_parser("domains", help="list the installed domains")
    d.set_defaults(func=cmd_domains)

    nd = sub.add_parser("new-domain", help="scaffold a domain package (data, net, oracle, plot, presets, tests)",
                        epilog="example:\n  genneg new-domain my_domain --dir .   # then: genneg run my_domain "
                        "--domain-path my_domain --preset tiny", formatter_class=argparse.RawDescriptionHelpFormatter)
    nd.add_argument("name", help="lower-case Python identifier, e.g. my_domain")
    nd.add_argument("--dir", default=".", help="folder to write NAME/ and tests/ into (default: %(default)s)")
    nd.set_defaults(func=cmd_new_domain)
    return p


def main(argv: list[str] | None = None) -> int:
    from genneg import distributed

    args = build_parser().parse_args(argv)
    if hasattr(args, "workers") and args.workers < 1:
        print(f"error: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        if hasattr(args, "device"):  # under torchrun: join the process group, take this rank's GPU
            args.device = distributed.init(_device(args.device))
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except (KeyError, ValueError, FileNotFoundError, TypeError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
