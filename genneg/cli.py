"""The ``genneg`` command. ``main`` only parses, builds a config and calls the library."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

EXAMPLES = """
examples:
  genneg run toy --preset default --seeds 3 --run-dir runs/toy     # the whole method + baselines + report
  genneg train toy --preset tiny --run-dir runs/toy-tiny           # base model only
  genneg train toy --preset tiny --run-dir runs/toy-tiny --resume  # continue a killed run
  genneg sample --run-dir runs/toy-tiny --n 1000 --out samples.npz
  genneg sample --run-dir runs/toy-tiny --n 1000000 --batch-size 8192 --workers 2 --out big/   # streamed .npy files
  torchrun --nproc_per_node 2 -m genneg train toy --preset tiny --run-dir runs/ddp           # DDP, any command
  genneg eval --run-dir runs/toy-tiny
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


def _main_only(quiet: bool) -> bool:
    """Whether progress bars stay off: --quiet, or not rank 0 under torchrun."""
    from genneg import distributed

    return quiet or not distributed.is_main()


def _say(text: str) -> None:
    """Prints on rank 0 only (every rank runs the same command under torchrun)."""
    from genneg import distributed

    if distributed.is_main():
        print(text)


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


# ------------------------------------------------------------------------------------------------------- commands


def cmd_train(args):
    from tqdm import tqdm

    from genneg import distributed
    from genneg.checkpoint import write_json
    from genneg.domain import get_domain
    from genneg.models import fit_base

    run_dir = Path(args.run_dir)
    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    if (run_dir / "config.json").exists() and not args.resume:
        raise SystemExit(f"error: {run_dir} already holds a run; pass --resume to continue it or choose another folder")
    if args.resume and (run_dir / "config.json").exists():
        cfg = replace(load_run_config(run_dir), device=cfg.device)
    distributed.barrier()  # every rank has looked before rank 0 writes
    write_json(run_dir / "config.json", cfg.to_dict())
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    log = StatsLog(run_dir)
    with tqdm(total=cfg.base.steps, desc="base", disable=_main_only(args.quiet)) as bar:
        fit_base(domain, cfg, run_dir, resume=args.resume, callback=train_callback(bar, log, "base"))
    _say(f"wrote {run_dir / 'base.safetensors'}")


def _load_stage(run_dir: Path, stage: str, domain_path=None):
    from genneg.domain import get_domain
    from genneg.models import load_denoiser

    cfg = load_run_config(run_dir)
    domain = get_domain(cfg.domain, domain_path=domain_path, **cfg.data)
    path = run_dir / f"{stage}.safetensors"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist (train it first, or pick another --stage)")
    return cfg, domain, load_denoiser(domain, cfg, path)


def cmd_sample(args):
    from tqdm import tqdm

    from genneg.distributed import executor, labelling_oracle
    from genneg.generate import sample_to_disk

    run_dir = Path(args.run_dir)
    cfg, domain, denoiser = _load_stage(run_dir, args.stage, args.domain_path)
    cfg = _sampler(replace(cfg, device=args.device), args.batch_size)
    if args.n < 1:
        raise SystemExit(f"error: --n must be >= 1, got {args.n}")
    with executor(args.workers, args.dask_scheduler) as ex, \
            tqdm(total=args.n, desc=f"sample {args.stage}", disable=_main_only(args.quiet)) as bar:
        out = sample_to_disk(denoiser.to(cfg.device), domain, args.n, cfg.sampler, args.out,
                             oracle=labelling_oracle(domain.oracle(), ex), split=args.split, seed=args.seed,
                             device=cfg.device, callback=bar.update)
    _say(f"wrote {args.n} samples to {out['path']} ({100 * out['invalid'] / max(args.n - out['undefined'], 1):.2f} % "
         f"invalid" + (f", {out['undefined']} undefined" if out["undefined"] else "") + ")")


def cmd_eval(args):
    from genneg.checkpoint import write_json
    from genneg.distributed import executor, labelling_oracle
    from genneg.evaluate import EvalData, evaluate_denoiser

    run_dir = Path(args.run_dir)
    cfg, domain, denoiser = _load_stage(run_dir, args.stage, args.domain_path)
    cfg = _sampler(replace(cfg, device=args.device), args.batch_size)
    with executor(args.workers, args.dask_scheduler) as ex:
        metrics, _, _ = evaluate_denoiser(denoiser.to(cfg.device), domain, cfg, EvalData(domain, cfg),
                                          labelling_oracle(domain.oracle(), ex))
    write_json(run_dir / f"eval_{args.stage}.json", metrics)
    StatsLog(run_dir).write(stage=f"eval_{args.stage}", **{"metrics": metrics})
    _say(format_metrics(args.stage, metrics))


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


def cmd_run(args):
    from genneg import distributed
    from genneg.distributed import executor
    from genneg.domain import get_domain
    from genneg.run import run

    cfg = resolve_config(args.domain, args.preset, args.set, args.seed, args.device, args.domain_path)
    run_dir = Path(args.run_dir or f"runs/{args.domain}-{args.preset}")
    if args.resume and (run_dir / "config.json").exists():
        cfg = replace(load_run_config(run_dir), device=cfg.device)
    cfg = _sampler(cfg, args.batch_size)
    if args.seeds < 1:
        raise SystemExit("error: --seeds must be >= 1")
    if args.workers > 1 and (distributed.is_distributed() or args.oracle_workers > 1 or args.dask_scheduler):
        raise SystemExit("error: --workers (seeds in parallel processes) cannot be combined with torchrun, "
                         "--oracle-workers or --dask-scheduler; run the seeds one after another")
    domain = get_domain(cfg.domain, domain_path=args.domain_path, **cfg.data)
    names = args.oracle.split(",") if args.oracle else None
    domain.oracle(names)  # fail early on unknown oracle names
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
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained stage and label them")
    common(s, domain=False)
    s.add_argument("--run-dir", required=True)
    s.add_argument("--stage", default="base", help="base, distilled, ... (a *.safetensors in the run folder)")
    s.add_argument("--num-samples", "--n", dest="n", type=int, default=1000,
                   help="samples to draw (default: %(default)s; under torchrun spell it --num-samples)")
    s.add_argument("--split", default="test", help="split whose conditions to generate on")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="a .npz archive, or a folder of .npy files (any other path); written "
                   "batch by batch, so n is bounded by the disk, not by memory")
    scale_options(s, "oracle labelling")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("eval", help="infraction rate (Wilson interval, per reason) and NLL bound of a stage")
    common(e, domain=False)
    e.add_argument("--run-dir", required=True)
    e.add_argument("--stage", default="base")
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
