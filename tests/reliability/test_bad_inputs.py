"""Bad inputs at every public entry point of the engine: each must fail with the right error type and a message that
names the problem (and, for a file, the file). Table-driven: every row of ``CASES`` is one bad input.

Groups: engine tensors and configs, checkpoints and run folders, the ``genneg`` command, oracle results and the toy
oracles. The traffic and motion domains keep their rows beside their other tests
(``tests/traffic/test_traffic_bad_inputs.py``, ``tests/motion/test_motion_bad_inputs.py``); the three tables share
``tests/bad_inputs.py``. Files are written once per table into a temporary folder.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
from bad_inputs import INF, NAN, Bad, BadInputTable

from genneg.domains.toy import ToyDomain
from genneg.checkpoint import load_state, load_weights, read_json, read_npz, save_weights, write_json
from genneg.classifier import NoisyClassifier, balanced_set, fit_classifier, importance_weights
from genneg.cli import main as cli_main
from genneg.config import EvalConfig, GenNegConfig, RunConfig, SamplerConfig, config_from_dict, override
from genneg.diffusion import EDMPrecond, LogNormalSigma, LogUniformSigma, edm_loss, karras_sigmas
from genneg.domain import get_domain, validate_x0
from genneg.generate import generate
from genneg.guidance import GuidanceTerm, guided
from genneg.likelihood import mean_and_stderr, nll_bound
from genneg.genneg import load_classifier
from genneg.models import build_denoiser, load_denoiser
from genneg.oracle import FunctionOracle, OracleOutputError, OracleResult, get_oracle
from genneg.labelling import label
from genneg.run import run
from genneg.sampling import sample, sample_heun, sample_stochastic
from genneg.stats import wilson_interval
from genneg.training import TrainConfig, train
from genneg.oracles.toy import Checkerboard, Rings

SIGMAS = karras_sigmas(4, 0.002, 80.0)
TOY = ToyDomain(n_train=16, n_eval=16)
TINY = TOY.presets()["tiny"]


def identity(x, sigma, cond=None):
    return x


class CliError(Exception):
    """The `genneg` command exited non-zero; the message is what it printed."""


def cli(*argv: str) -> None:
    """Runs the `genneg` command in-process; raises CliError with its output if it fails. A traceback fails the test."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = cli_main(list(argv))
    except SystemExit as e:  # argparse and resolve_config exit with a message
        code = e.code if isinstance(e.code, int) else 2
        err.write("" if isinstance(e.code, int) else str(e.code))
    text = err.getvalue() + out.getvalue()
    assert "Traceback" not in text, text
    if code:
        raise CliError(text)

def write_engine_files(r: Path) -> None:
    """Weights, train states and run folders for the CLI, each bad in one way."""
    save_weights(r / "w.safetensors", {"a": torch.ones(100)})
    (r / "w_trunc.safetensors").write_bytes((r / "w.safetensors").read_bytes()[:60])
    # run folders for the CLI: a config only, a config with a random-init base, a wrong-architecture base
    for name in ("run_nobase", "run_base", "run_wrongnet", "run_garbage_base"):
        write_json(r / name / "config.json", TINY.to_dict())
    save_weights(r / "run_base" / "base.safetensors", build_denoiser(TOY, TINY))
    other = override(TINY, "net", {"width": 8, "depth": 1})
    save_weights(r / "run_wrongnet" / "base.safetensors", build_denoiser(TOY, other))
    (r / "run_garbage_base" / "base.safetensors").write_bytes(b"\x00" * 64)
    (r / "run_trunc").mkdir()
    (r / "run_trunc" / "config.json").write_text('{"domain": "toy", ')
    write_json(r / "run_unknown" / "config.json", {**TINY.to_dict(), "colour": "red"})


def _fit(x0, y, **kw):
    net = torch.nn.Linear(2, 1)
    model = NoisyClassifier(_Squeeze(net), 0.5)
    return fit_classifier(model, x0, y, TrainConfig(steps=2, batch_size=4), **kw)


class _Raw(torch.nn.Module):
    def forward(self, x, c_noise, cond):
        return x


class _Squeeze(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, c_noise, cond):
        return self.net(x).squeeze(-1)


def _train_on(data):
    return train(torch.nn.Linear(2, 2), lambda m, b, g: (m(b) ** 2).sum(1), data, TrainConfig(steps=2, batch_size=2))


def _run_twice(f):
    run(TOY, TINY, f.path("run_base"), seeds=1)

# ---------------------------------------------------------------------------------------------------- the table
CASES: list[Bad] = [
    # --- engine: samples, sigmas, denoisers
    Bad("decode NaN", lambda f: TOY.decode(torch.tensor([[NAN, 0.0]])), ValueError, "NaN"),
    Bad("decode inf", lambda f: TOY.decode(torch.tensor([[INF, 0.0]])), ValueError, "NaN or inf"),
    Bad("decode wrong shape", lambda f: TOY.decode(torch.zeros(3, 3)), ValueError, r"shape \[B, 2\]"),
    Bad("decode empty batch", lambda f: TOY.decode(torch.zeros(0, 2)), ValueError, "empty batch"),
    Bad("decode integer dtype", lambda f: TOY.decode(torch.zeros(3, 2, dtype=torch.int64)), ValueError,
        "floating point"),
    Bad("decode numpy instead of tensor", lambda f: TOY.decode(np.zeros((3, 2))), TypeError, "torch.Tensor"),
    Bad("validate_x0 1-D", lambda f: validate_x0(torch.zeros(4), (2,)), ValueError, "shape"),
    Bad("heun NaN noise", lambda f: sample_heun(identity, torch.tensor([[NAN, 0.0]]), SIGMAS), ValueError,
        "initial noise x"),
    Bad("heun empty batch", lambda f: sample_heun(identity, torch.zeros(0, 2), SIGMAS), ValueError, "B > 0"),
    Bad("heun integer x", lambda f: sample_heun(identity, torch.zeros(4, 2, dtype=torch.int64), SIGMAS), ValueError,
        "floating point"),
    Bad("heun rising sigmas", lambda f: sample_heun(identity, torch.zeros(4, 2), torch.tensor([1.0, 2.0, 0.0])),
        ValueError, "strictly decreasing"),
    Bad("heun NaN sigma", lambda f: sample_heun(identity, torch.zeros(4, 2), torch.tensor([NAN, 1.0, 0.0])),
        ValueError, "sigmas must be finite"),
    Bad("heun single sigma", lambda f: sample_heun(identity, torch.zeros(4, 2), torch.tensor([1.0])), ValueError,
        "at least two"),
    Bad("heun denoiser gives NaN", lambda f: sample_heun(lambda x, s, c: x * NAN, torch.randn(4, 2), SIGMAS),
        ValueError, "denoiser output .* non-finite"),
    Bad("heun denoiser wrong shape", lambda f: sample_heun(lambda x, s, c: x[:, :1], torch.randn(4, 2), SIGMAS),
        ValueError, "denoiser returned shape"),
    Bad("stochastic negative churn", lambda f: sample_stochastic(identity, torch.randn(4, 2), SIGMAS, s_churn=-1.0),
        ValueError, "s_churn"),
    Bad("stochastic NaN churn", lambda f: sample_stochastic(identity, torch.randn(4, 2), SIGMAS, s_churn=NAN),
        ValueError, "s_churn"),
    Bad("unknown sampler", lambda f: sample(identity, (4, 2), SIGMAS, sampler="euler"), ValueError, "unknown sampler"),
    Bad("karras zero steps", lambda f: karras_sigmas(0, 0.002, 80.0), ValueError, "at least one sampling step"),
    Bad("karras NaN sigma_min", lambda f: karras_sigmas(4, NAN, 80.0), ValueError, "sigma_min < sigma_max"),
    Bad("karras infinite sigma_max", lambda f: karras_sigmas(4, 0.002, INF), ValueError, "sigma_max < inf"),
    Bad("karras rho 0", lambda f: karras_sigmas(4, 0.002, 80.0, rho=0.0), ValueError, "rho"),
    Bad("EDMPrecond sigma_data 0", lambda f: EDMPrecond(torch.nn.Identity(), 0.0), ValueError, "sigma_data"),
    Bad("EDMPrecond sigma_data NaN", lambda f: EDMPrecond(torch.nn.Identity(), NAN), ValueError, "sigma_data"),
    Bad("denoiser sigma of wrong length",
        lambda f: EDMPrecond(_Squeeze(torch.nn.Linear(2, 2)))(torch.zeros(4, 2), torch.ones(3)), ValueError,
        r"sigma must be a scalar or of shape \[4\]"),
    Bad("LogUniformSigma inverted", lambda f: LogUniformSigma(1.0, 0.1), ValueError, "sigma_min < sigma_max"),
    Bad("LogNormalSigma p_std 0", lambda f: LogNormalSigma(p_std=0.0), ValueError, "p_std"),
    Bad("edm_loss defined mask of wrong shape",
        lambda f: edm_loss(EDMPrecond(_Raw()), torch.zeros(2, 3, 4), {"defined": torch.ones(2, 4, dtype=bool)}),
        ValueError, "defined"),
    Bad("nll empty", lambda f: nll_bound(identity, torch.zeros(0, 2)), ValueError, "B > 0"),
    Bad("nll inf data", lambda f: nll_bound(identity, torch.tensor([[INF, 0.0]])), ValueError, "x0 contains"),
    Bad("nll NaN sigma_min", lambda f: nll_bound(identity, torch.zeros(2, 2), sigma_min=NAN), ValueError, "sigma_min"),
    Bad("nll zero sigmas", lambda f: nll_bound(identity, torch.zeros(2, 2), num_sigmas=0), ValueError, "num_sigmas"),
    Bad("nll denoiser gives NaN", lambda f: nll_bound(lambda x, s, c: x * NAN, torch.zeros(2, 2)), ValueError,
        "NLL bound contains"),
    Bad("mean of nothing", lambda f: mean_and_stderr(torch.zeros(0)), ValueError, "empty"),
    Bad("generate zero samples", lambda f: generate(identity, TOY.sample_shape, 0, TINY.sampler), ValueError, "n >= 1"),
    Bad("generate with too few conditions",
        lambda f: generate(identity, TOY.sample_shape, 4, TINY.sampler, {"defined": torch.ones(3, 2)}), ValueError,
        "3 conditions for 4 samples"),
    Bad("wilson k > n", lambda f: wilson_interval(5, 3), ValueError, "k <= n"),
    # --- guidance and classifiers
    Bad("guidance window inverted", lambda f: GuidanceTerm(lambda x, s, c: x.sum(1), sigma_range=(2.0, 1.0)),
        ValueError, "sigma_range"),
    Bad("guidance weight inf", lambda f: GuidanceTerm(lambda x, s, c: x.sum(1), weight=INF), ValueError, "finite"),
    Bad("guidance max_ratio negative", lambda f: GuidanceTerm(lambda x, s, c: x.sum(1), max_ratio=-1.0), ValueError,
        "max_ratio"),
    Bad("guidance term of wrong shape",
        lambda f: guided(identity, [GuidanceTerm(lambda x, s, c: x, name="bad")])(torch.zeros(4, 2), torch.ones(4)),
        ValueError, "'bad' returned shape"),
    Bad("importance weights alpha 1", lambda f: importance_weights(torch.ones(3, dtype=bool), 1.0), ValueError,
        "0 < alpha < 1"),
    Bad("importance weights alpha NaN", lambda f: importance_weights(torch.ones(3, dtype=bool), NAN), ValueError,
        "0 < alpha < 1"),
    Bad("balanced set of one class", lambda f: balanced_set(torch.zeros(4, 2), torch.ones(4, dtype=bool)), ValueError,
        "needs both classes"),
    Bad("classifier labels count", lambda f: _fit(torch.zeros(4, 2), torch.ones(3, dtype=bool)), ValueError,
        "4 samples but 3 labels"),
    Bad("classifier net of wrong output",
        lambda f: NoisyClassifier(_Raw(), 0.5).logit(torch.zeros(4, 2), torch.ones(4)), ValueError,
        "classifier net returned shape"),
    # --- training and configs
    Bad("train on empty data", lambda f: _train_on(torch.zeros(0, 2)), ValueError, "empty dataset"),
    Bad("train on NaN data", lambda f: _train_on(torch.full((4, 2), NAN)), ValueError, "data contains NaN or inf"),
    Bad("train on inf data in a dict", lambda f: _train_on({"x0": torch.full((4, 2), INF)}), ValueError,
        r"data\['x0'\] contains NaN or inf"),
    Bad("train into a NaN loss", lambda f: train(torch.nn.Linear(2, 2), lambda m, b, g: m(b).sum(1) * NAN,
                                                 torch.zeros(4, 2), TrainConfig(steps=2, batch_size=2)),
        FloatingPointError, "loss became nan at step 0"),
    Bad("TrainConfig steps 0", lambda f: TrainConfig(steps=0), ValueError, "steps must be >= 1"),
    Bad("TrainConfig steps 2.5", lambda f: TrainConfig(steps=2.5), ValueError, "steps must be an integer"),
    Bad("TrainConfig lr NaN", lambda f: TrainConfig(lr=NAN), ValueError, "lr must be positive"),
    Bad("TrainConfig lr inf", lambda f: TrainConfig(lr=INF), ValueError, "lr must be positive and finite"),
    Bad("TrainConfig grad_clip NaN", lambda f: TrainConfig(grad_clip=NAN), ValueError, "grad_clip"),
    Bad("TrainConfig decay kind", lambda f: TrainConfig(lr_decay="step"), ValueError, "lr_decay"),
    Bad("TrainConfig ema 1", lambda f: TrainConfig(ema_decay=1.0), ValueError, "ema_decay"),
    Bad("SamplerConfig kind", lambda f: SamplerConfig(kind="euler"), ValueError, "kind"),
    Bad("SamplerConfig rho -1", lambda f: SamplerConfig(rho=-1.0), ValueError, "rho"),
    Bad("SamplerConfig sigma NaN", lambda f: SamplerConfig(sigma_max=NAN), ValueError, "sigma_max"),
    Bad("GenNegConfig guidance weight NaN", lambda f: GenNegConfig(guidance_weight=NAN), ValueError, "guidance_weight"),
    Bad("GenNegConfig window inverted", lambda f: GenNegConfig(guidance_sigma_min=2.0, guidance_sigma_max=1.0),
        ValueError, "guidance_sigma_min <= guidance_sigma_max"),
    Bad("GenNegConfig penalty weight negative", lambda f: GenNegConfig(penalty_weight=-1.0), ValueError,
        "penalty_weight"),
    Bad("GenNegConfig max_ratio 0", lambda f: GenNegConfig(guidance_max_ratio=0.0), ValueError, "guidance_max_ratio"),
    Bad("GenNegConfig unknown baseline", lambda f: GenNegConfig(baselines=("magic",)), ValueError, "unknown baselines"),
    Bad("GenNegConfig prior correction", lambda f: GenNegConfig(prior_correction="none"), ValueError,
        "prior_correction"),
    Bad("GenNegConfig one sample a round", lambda f: GenNegConfig(samples_per_round=1), ValueError,
        "samples_per_round >= 2"),
    Bad("EvalConfig sigma range inverted", lambda f: EvalConfig(nll_sigma_min=1.0, nll_sigma_max=0.5), ValueError,
        "nll_sigma_min < nll_sigma_max"),
    Bad("config unknown field", lambda f: config_from_dict(RunConfig, {"domain": "toy", "colour": "red"}), ValueError,
        r"unknown RunConfig field\(s\): \['colour'\]"),
    Bad("override unknown field", lambda f: override(TINY, "base.speed", 3), ValueError, "unknown config field"),
    # --- registries
    Bad("unknown domain", lambda f: get_domain("nope"), KeyError, "unknown domain 'nope'"),
    Bad("unknown domain keyword", lambda f: get_domain("toy", colour="red"), TypeError, "colour"),
    Bad("unknown toy shape", lambda f: get_domain("toy", shape="triangle"), ValueError, "unknown toy shape"),
    Bad("unknown oracle", lambda f: get_oracle("nope"), KeyError, "unknown oracle 'nope'"),
    Bad("unknown oracle for a domain", lambda f: TOY.oracle(["checkerboard", "nope"]), KeyError, "unknown oracle"),
    Bad("unknown split", lambda f: TOY.points("holdout"), ValueError, "unknown split"),
    Bad("domain path missing", lambda f: get_domain("x", domain_path=f.path("no_such_dir")), FileNotFoundError,
        "domain-path"),
    # --- oracle results and labelling
    Bad("oracle verdict of wrong length",
        lambda f: label(FunctionOracle("short", lambda s, c: np.ones(2, bool)), np.zeros((4, 2))), OracleOutputError,
        "2 verdicts for 4 samples"),
    Bad("oracle verdict not boolean", lambda f: OracleResult(np.array([0.5, 1.0])), OracleOutputError, "boolean"),
    Bad("oracle verdict 2-D", lambda f: OracleResult(np.zeros((2, 2), bool)), OracleOutputError, "1-D"),
    Bad("label empty batch", lambda f: label(Checkerboard(), np.zeros((0, 2))), ValueError, "empty"),
    # --- toy oracles
    Bad("checkerboard NaN", lambda f: Checkerboard()(np.array([[NAN, 0.0]])), ValueError, "NaN or inf"),
    Bad("checkerboard empty", lambda f: Checkerboard()(np.zeros((0, 2))), ValueError, "empty batch"),
    Bad("checkerboard 3-D points", lambda f: Checkerboard()(np.zeros((4, 3))), ValueError, r"\[B, 2\]"),
    Bad("checkerboard text", lambda f: Checkerboard()(np.array([["a", "b"]])), ValueError, "numeric"),
    Bad("checkerboard k 0", lambda f: Checkerboard(k=0), ValueError, "k >= 1"),
    Bad("rings not increasing", lambda f: Rings(radii=((1.0, 0.5),)), ValueError, "strictly increasing"),
    # --- checkpoints and run folders
    Bad("weights missing", lambda f: load_weights(f.path("nope.safetensors")), FileNotFoundError, "no such weights"),
    Bad("weights truncated", lambda f: load_weights(f.path("w_trunc.safetensors")), ValueError, "truncated"),
    Bad("weights garbage", lambda f: load_weights(f.path("garbage.bin")), ValueError, "not a readable safetensors"),
    Bad("train state garbage", lambda f: load_state(f.path("garbage.bin")), ValueError, "refusing or unable"),
    Bad("train state missing", lambda f: load_state(f.path("nope.pt")), FileNotFoundError, "no such train state"),
    Bad("JSON truncated", lambda f: read_json(f.path("trunc.json")), ValueError, "trunc.json is not valid JSON"),
    Bad("JSON missing", lambda f: read_json(f.path("nope.json")), FileNotFoundError, "no such file"),
    Bad("npz truncated", lambda f: read_npz(f.path("truncated.npz")), ValueError, "truncated"),
    Bad("npz of pickled objects", lambda f: read_npz(f.path("object.npz")), ValueError, "pickled objects"),
    Bad("base of another architecture", lambda f: load_denoiser(TOY, TINY, f.path("run_wrongnet/base.safetensors")),
        ValueError, "does not match the 'toy' denoiser"),
    Bad("classifier of another architecture",
        lambda f: load_classifier(TOY, TINY, f.path("run_wrongnet/base.safetensors")), ValueError,
        "does not match the 'toy' classifier"),
    Bad("run into a finished folder", _run_twice, FileExistsError, "--resume"),
    Bad("run with 0 workers", lambda f: run(TOY, TINY, f.path("fresh_run"), workers=0), ValueError,
        "workers must be >= 1"),
    # --- the genneg command
    *[
        Bad(f"CLI {name}", (lambda a: lambda f: cli(*[x.format(d=f.root) for x in a]))(argv), CliError, m)
        for name, argv, m in [
            ("unknown domain", ["run", "nope", "--run-dir", "{d}/x"], "unknown domain 'nope'"),
            ("unknown preset", ["train", "toy", "--preset", "huge", "--run-dir", "{d}/x"], "unknown preset 'huge'"),
            ("unknown oracle", ["run", "toy", "--preset", "tiny", "--oracle", "nope", "--run-dir", "{d}/x"],
             "unknown oracle 'nope'"),
            ("zero seeds", ["run", "toy", "--preset", "tiny", "--seeds", "0", "--run-dir", "{d}/x"], "--seeds"),
            ("zero workers", ["run", "toy", "--preset", "tiny", "--workers", "0", "--run-dir", "{d}/zero_workers"],
             "workers must be >= 1"),
            ("--set without =", ["train", "toy", "--preset", "tiny", "--set", "base.steps", "--run-dir", "{d}/x"],
             "KEY=VALUE"),
            ("--set unknown field", ["train", "toy", "--preset", "tiny", "--set", "base.speed=1", "--run-dir", "{d}/x"],
             "unknown config field"),
            ("--set negative lr", ["train", "toy", "--preset", "tiny", "--set", "base.lr=-1", "--run-dir", "{d}/x"],
             "lr must be positive"),
            ("--set fractional steps", ["train", "toy", "--preset", "tiny", "--set", "base.steps=1.5", "--run-dir",
                                        "{d}/x"], "steps must be an integer"),
            ("--set NaN guidance weight", ["train", "toy", "--preset", "tiny", "--set", "genneg.guidance_weight=NaN",
                                           "--run-dir", "{d}/x"], "guidance_weight"),
            ("--set unknown sampler", ["train", "toy", "--preset", "tiny", "--set", 'sampler.kind="euler"',
                                       "--run-dir", "{d}/x"], "kind must be"),
            ("--set unknown shape", ["train", "toy", "--preset", "tiny", "--set", 'data.shape="triangle"',
                                     "--run-dir", "{d}/bad_shape"], "unknown toy shape"),
            ("unknown device", ["train", "toy", "--preset", "tiny", "--device", "tpu", "--run-dir", "{d}/x"],
             "invalid choice: 'tpu'"),
            ("eval without a run", ["eval", "--run-dir", "{d}/no_such_run"], "no config.json"),
            ("eval with a truncated config", ["eval", "--run-dir", "{d}/run_trunc"], "truncated"),
            ("eval with an unknown config field", ["eval", "--run-dir", "{d}/run_unknown"], "colour"),
            ("eval before training", ["eval", "--run-dir", "{d}/run_nobase"], "base.safetensors does not exist"),
            ("eval of an unknown stage", ["eval", "--run-dir", "{d}/run_base", "--stage", "round9"],
             "round9.safetensors does not exist"),
            ("eval with garbage weights", ["eval", "--run-dir", "{d}/run_garbage_base"], "not a readable safetensors"),
            ("eval of another architecture", ["eval", "--run-dir", "{d}/run_wrongnet"], "does not match"),
            ("eval of an unknown split", ["eval", "--run-dir", "{d}/run_base", "--split", "dev"], "unknown split"),
            ("sample zero", ["sample", "--run-dir", "{d}/run_base", "--n", "0", "--out", "{d}/s.npz"],
             "n must be >= 1"),
            ("sample of an unknown split", ["sample", "--run-dir", "{d}/run_base", "--split", "dev", "--n", "4",
                                            "--out", "{d}/s.npz"], "unknown split"),
            ("presets of an unknown domain", ["presets", "nope"], "unknown domain 'nope'"),
            ("data of a generated domain", ["data", "toy", "--preset", "tiny"], "on the fly"),
            ("new domain with a bad name", ["new-domain", "Bad-Name", "--dir", "{d}/new"], "lower-case Python"),
            ("train into a finished folder", ["train", "toy", "--preset", "tiny", "--run-dir", "{d}/run_base"],
             "--resume"),
        ]
    ],
]


# ---------------------------------------------------------------------------------------------------- the tests
class TestEngineBadInputs(BadInputTable):
    cases = CASES
    writers = (write_engine_files,)

    def test_valid_files_of_the_same_kinds_are_accepted(self, files):
        """The readers above refuse the bad files, not every file: the good twins load."""
        assert read_npz(files.path("plain.npz"))["a"].shape == (3,)
