"""The ``genneg`` command line: its subcommands, their options, help texts and examples."""

from __future__ import annotations

import argparse

from .commands import (cmd_data, cmd_demo, cmd_domains, cmd_eval, cmd_export_model, cmd_new_domain, cmd_presets,
                       cmd_run, cmd_sample, cmd_train)
from .resolve import sampler_arg

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
  genneg export-model --run-dir runs/toy --stage distilled --out pretrained/toy-default-genneg  # a run's student
  genneg run toy --preset default --base pretrained/toy-default      # start Gen-neG from a pretrained base
  genneg sample --run-dir runs/toy --stage round2 --n 1000 --out round2.npz   # any stage of a run, stacked too
  genneg presets toy                                               # list presets and their settings
  genneg train toy --preset tiny --set base.steps=500 --set data.shape=\\"rings\\"
"""


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
    sp.add_argument("--stage", default=None, help="base, round1 .. roundK (the base guided by classifiers 1..k), "
                    "distilled, no_is, time_independent, penalty (default: base; a pretrained folder's own stage)")
    sp.add_argument("--run-seed", type=int, default=None, help="which seed of a `genneg run` folder (default: its "
                    "first)")
    sp.add_argument("--sampler", type=sampler_arg, default=None, metavar="KIND[:STEPS]",
                    help="sample with this sampler instead of the run's, e.g. stochastic:32 (EDM's stochastic "
                    "sampler, 32 steps) or heun:18")


def common_options(sp, domain=True):
    """Options of the commands that load a domain; with ``domain``, also its name, preset, overrides and seed."""
    if domain:
        sp.add_argument("domain", help="domain name (see `genneg domains`)")
        sp.add_argument("--preset", default="default", help="named preset of the domain (default: %(default)s)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config field, e.g. base.steps=500")
        sp.add_argument("--seed", type=int, default=None, help="run seed (default: the preset's)")
    sp.add_argument("--domain-path", default=None, help="a local folder with a domain package (make_domain)")
    sp.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                    help="where networks run; auto = cuda when a GPU is there (default: %(default)s). Under "
                         "torchrun each process takes the GPU of its LOCAL_RANK")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EXAMPLES


def add_train(sub):
    t = sub.add_parser("train", help="train the base denoiser")
    common_options(t)
    t.add_argument("--run-dir", required=True, help="folder for weights, config and stats.jsonl")
    t.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --run-dir")
    t.add_argument("--eval-every", type=int, default=None, metavar="K",
                   help="evaluate the EMA weights on held-out data every K steps into curve.json / curve.png "
                        "(default: base.checkpoint_every; 0: only at the last step, which is always evaluated)")
    threads_option(t)
    t.set_defaults(func=cmd_train)


def add_export_model(sub):
    x = sub.add_parser("export-model", help="write a pretrained model folder (weights, card, curve) from a finished "
                       "`genneg train` run", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    x.add_argument("--run-dir", required=True, help="the finished `genneg train` run, or a `genneg run` folder "
                   "with --stage distilled")
    x.add_argument("--stage", default=None, choices=["distilled"], help="export this stage of a finished `genneg "
                   "run` (its distilled Gen-neG model) instead of a `genneg train` base")
    x.add_argument("--out", default=None, help="the model folder (default: pretrained/<domain>-<preset>, with "
                   "-genneg for a distilled stage)")
    x.add_argument("--sampler", type=sampler_arg, default=None, metavar="KIND[:STEPS]",
                   help="the folder's sampler, e.g. stochastic:32: `genneg sample` and `genneg eval` use it from "
                   "the folder, and the card's rows are measured with it on the test split (default: the run's)")
    x.add_argument("--force", action="store_true", help="replace --out if it exists")
    x.add_argument("--domain-path", default=None, help="a local folder with a domain package (make_domain)")
    x.set_defaults(func=cmd_export_model)


def add_stage_command(sub, name: str, help: str, func, own_options) -> None:
    """A command that loads one stage, samples and labels; ``own_options(sp)`` adds its own options."""
    sp = sub.add_parser(name, help=help)
    common_options(sp, domain=False)
    stage_options(sp)
    own_options(sp)
    threads_option(sp)
    scale_options(sp, "oracle labelling")
    sp.set_defaults(func=func)


def sample_options(s):
    s.add_argument("--num-samples", "--n", dest="n", type=int, default=1000,
                   help="samples to draw (default: %(default)s; under torchrun spell it --num-samples)")
    s.add_argument("--split", default="test", help="split whose conditions to generate on")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="a .npz archive, or a folder of .npy files (any other path); written "
                   "batch by batch, so n is bounded by the disk, not by memory. A suffix the domain exports (e.g. "
                   ".json) is written in the domain's own format with the oracle's verdicts instead")


def eval_options(e):
    e.add_argument("--split", default="test", help="split whose conditions and held-out data it is measured on, e.g. "
                   "train for the generalisation gap (default: %(default)s, what every report uses)")
    e.add_argument("--out", default=None, help="metrics JSON (default: eval_<stage>.json in the run folder, with "
                   "_<split> for another split and _<sampler> (e.g. _stochastic32) for --sampler; nothing is written "
                   "into a pretrained model folder)")


def add_sample(sub):
    add_stage_command(sub, "sample", "draw samples from a trained stage and label them", cmd_sample, sample_options)


def add_eval(sub):
    add_stage_command(sub, "eval", "infraction rate (Wilson interval, per reason) and NLL bound of a stage", cmd_eval,
                      eval_options)


def add_run(sub):
    r = sub.add_parser("run", help="the whole Gen-neG pipeline with baselines, evaluated and reported")
    common_options(r)
    r.add_argument("--seeds", type=int, default=1, help="independent repetitions (seeds seed..seed+S-1)")
    r.add_argument("--run-dir", default=None, help="default: runs/<domain>-<preset>")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run at the stage where it stopped")
    r.add_argument("--oracle", default=None,
                   help="comma-separated oracle names to guide against (default: the domain's)")
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


def add_data(sub):
    da = sub.add_parser("data", help="generate and cache a domain's data for a preset (e.g. SUMO scenes)")
    common_options(da)
    da.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    da.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                    help="generate on this Dask cluster instead of local processes (pip install 'genneg[dask]')")
    da.add_argument("--split", action="append", default=None, metavar="NAME",
                    help="generate only this split (repeatable, e.g. --split test: the held-out networks alone; a "
                         "later run without it reuses them). Domains whose prepare_data takes splits (traffic)")
    da.set_defaults(func=cmd_data)


def add_demo(sub):
    d = sub.add_parser("demo", help="shipped models side by side on held-out data: oracle, measures, SUMO hand-off, "
                       "figure grid, report", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  genneg demo traffic        # pretrained/traffic-cpu, and "
                       "pretrained/traffic-cpu-genneg once shipped\n  genneg demo traffic --model pretrained/"
                       "traffic-cpu --model my-model --out runs/compare")
    d.add_argument("domain", help="a domain with a demo (genneg.domains.<domain>.demo; today: traffic)")
    d.add_argument("--model", action="append", default=None, metavar="FOLDER",
                   help="a model folder, a row of the report (repeatable; each must exist; default: the domain "
                        "demo's DEFAULT_MODELS, e.g. pretrained/traffic-cpu)")
    d.add_argument("--optional-model", action="append", default=None, metavar="FOLDER",
                   help="a model folder used when it exists (repeatable; default, when no --model is given: the "
                        "domain demo's OPTIONAL_MODELS, e.g. pretrained/traffic-cpu-genneg)")
    d.add_argument("--out", default=None, help="the report folder (default: runs/demo-<domain>)")
    d.add_argument("--num-samples", "--n", dest="n", type=int, default=256,
                   help="scenes per model, on the same held-out conditions and noise (default: %(default)s)")
    d.add_argument("--handoff", type=int, default=8, help="scenes per model handed to SUMO (default: %(default)s)")
    d.add_argument("--columns", type=int, default=4, help="maps in the figure grid (default: %(default)s)")
    d.add_argument("--seconds", type=float, default=10.0,
                   help="simulated seconds of each SUMO hand-off (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="the demo's conditions and noise (default: %(default)s)")
    d.add_argument("--workers", type=int, default=2,
                   help="processes for missing SUMO data and the hand-offs (default: %(default)s)")
    d.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"),
                   help="where the models sample (default: %(default)s)")
    d.add_argument("--quiet", action="store_true", help="no progress lines")
    threads_option(d)
    d.set_defaults(func=cmd_demo)


def add_listings(sub):
    """``presets`` and ``domains``: what is installed."""
    pr = sub.add_parser("presets", help="list a domain's presets")
    pr.add_argument("domain")
    pr.add_argument("--domain-path", default=None)
    pr.set_defaults(func=cmd_presets)

    d = sub.add_parser("domains", help="list the installed domains")
    d.set_defaults(func=cmd_domains)


def add_new_domain(sub):
    nd = sub.add_parser("new-domain", help="scaffold a domain package (data, net, oracle, plot, presets, tests)",
                        epilog="example:\n  genneg new-domain my_domain --dir .   # then: genneg run my_domain "
                        "--domain-path my_domain --preset tiny", formatter_class=argparse.RawDescriptionHelpFormatter)
    nd.add_argument("name", help="lower-case Python identifier, e.g. my_domain")
    nd.add_argument("--dir", default=".", help="folder to write NAME/ and tests/ into (default: %(default)s)")
    nd.set_defaults(func=cmd_new_domain)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genneg", description="Gen-neG: keep diffusion models away from invalid samples.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (add_train, add_export_model, add_sample, add_eval, add_run, add_data, add_demo, add_listings,
                add_new_domain):
        add(sub)  # in this order in --help
    return p
