"""Bad inputs at every public entry point: each must fail with the right error type and a message that names the
problem (and, for a file, the file). Table-driven: every row of ``CASES`` is one bad input.

Groups: engine tensors and configs, checkpoints and run folders, the ``genneg`` command, oracles (toy, traffic,
motion), map and data readers (SUMO, lanelet2, INTERACTION, AMASS, DeepMimic, SMPL, motion windows, scene files),
and missing optional extras. Files are written once per module into a temporary folder.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

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
from reliability_helpers import tiny_smpl

shapely = pytest.importorskip("shapely")

from domains.toy import ToyDomain  # noqa: E402
from oracles.toy import Checkerboard, Rings  # noqa: E402

NAN, INF = float("nan"), float("inf")
SIGMAS = karras_sigmas(4, 0.002, 80.0)
TOY = ToyDomain(n_train=16, n_eval=16)
TINY = TOY.presets()["tiny"]


def identity(x, sigma, cond=None):
    return x


@dataclass(frozen=True)
class Bad:
    """One bad input: ``call(files)`` must raise ``error`` with a message matching ``match`` (a regex)."""

    name: str
    call: Callable[[Any], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str


def file_cases(label: str, reader: Callable[[Any], Any], rows) -> list[Bad]:
    """One Bad per ``(name, file, error, match)`` row: ``reader`` applied to that fixture file."""
    return [Bad(f"{label} {name}", lambda f, file=file: reader(f.path(file)), err, match)
            for name, file, err, match in rows]


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


@contextlib.contextmanager
def _without(modules: tuple[str, ...], fresh: tuple[str, ...] = ()):
    """Imports of ``modules`` fail inside the block, as when an optional extra is not installed; modules under the
    ``fresh`` prefixes are imported anew (and the originals put back afterwards)."""
    saved = {k: v for k, v in sys.modules.items() if k in modules or k.startswith(fresh) and fresh}
    try:
        for k in saved:
            del sys.modules[k]
        for m in modules:
            sys.modules[m] = None  # `import m` raises ModuleNotFoundError
        yield
    finally:
        for k in [k for k in sys.modules if k in modules or fresh and k.startswith(fresh)]:
            del sys.modules[k]
        sys.modules.update(saved)


def without(modules, call, fresh=()):
    def run_it(f):
        with _without(tuple(modules), tuple(fresh)):
            return call(f)

    return run_it


class _Files:
    """Bad files, written once: ``f.path("name")``."""

    def __init__(self, root: Path):
        self.root = root
        self._write_all()

    def path(self, name: str) -> Path:
        return self.root / name

    def _write_all(self):
        r = self.root
        np.savez(r / "plain.npz", a=np.zeros(3))
        whole = (r / "plain.npz").read_bytes()
        (r / "truncated.npz").write_bytes(whole[: len(whole) // 2])
        (r / "garbage.bin").write_bytes(b"\x00\x01\x02 not a file format \xff")
        (r / "empty.txt").write_text("")
        np.savez(r / "object.npz", a=np.array([{"x": 1}], dtype=object))
        save_weights(r / "w.safetensors", {"a": torch.ones(100)})
        (r / "w_trunc.safetensors").write_bytes((r / "w.safetensors").read_bytes()[:60])
        (r / "trunc.json").write_text('{"a": ')
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
        # AMASS
        np.savez(r / "amass_ok.npz", poses=np.zeros((5, 72)), trans=np.zeros((5, 3)), mocap_framerate=30.0)
        amass = (r / "amass_ok.npz").read_bytes()
        (r / "amass_trunc.npz").write_bytes(amass[: len(amass) // 2])
        np.savez(r / "amass_pickle.npz", poses=np.array([{"a": 1}], dtype=object), trans=np.zeros((5, 3)),
                 mocap_framerate=30.0)
        np.savez(r / "amass_shape.npz", poses=np.zeros((5, 70)), trans=np.zeros((5, 3)), mocap_framerate=30.0)
        np.savez(r / "amass_nan.npz", poses=np.full((5, 72), np.nan), trans=np.zeros((5, 3)), mocap_framerate=30.0)
        np.savez(r / "amass_inf_trans.npz", poses=np.zeros((5, 72)), trans=np.full((5, 3), np.inf),
                 mocap_framerate=30.0)
        np.savez(r / "amass_fps0.npz", poses=np.zeros((5, 72)), trans=np.zeros((5, 3)), mocap_framerate=0.0)
        np.savez(r / "amass_fps_many.npz", poses=np.zeros((5, 72)), trans=np.zeros((5, 3)),
                 mocap_framerate=np.array([30.0, 60.0]))
        np.savez(r / "amass_one_frame.npz", poses=np.zeros((1, 72)), trans=np.zeros((1, 3)), mocap_framerate=30.0)
        np.savez(r / "amass_text.npz", poses=np.full((5, 72), "x"), trans=np.zeros((5, 3)), mocap_framerate=30.0)
        np.savez(r / "amass_lacks.npz", poses=np.zeros((5, 72)))
        # DeepMimic
        frame = [0.05, 0, 0.9, 0, 1, 0, 0, 0] + ([1, 0, 0, 0] * 2 + [1, 0, 0, 0, 0]) * 3 + [1, 0, 0, 0]
        frame = frame[:44]
        (r / "clip_trunc.txt").write_text(json.dumps({"Loop": "wrap", "Frames": [frame] * 3})[:60])
        (r / "clip_list.txt").write_text("[1, 2, 3]")
        (r / "clip_width.txt").write_text(json.dumps({"Frames": [frame[:40]] * 3}))
        (r / "clip_one.txt").write_text(json.dumps({"Frames": [frame]}))
        (r / "clip_nan.txt").write_text(json.dumps({"Frames": [frame[:3] + [float("nan")] + frame[4:]] * 3}))
        (r / "clip_text.txt").write_text(json.dumps({"Frames": [["a"] * 44] * 3}))
        (r / "clip_bool.txt").write_text(json.dumps({"Frames": [[True] * 44] * 3}))
        (r / "clip_zero_dt.txt").write_text(json.dumps({"Frames": [[0.0] + frame[1:]] * 3}))
        (r / "clip_zero_quat.txt").write_text(json.dumps({"Frames": [frame[:4] + [0, 0, 0, 0] + frame[8:]] * 3}))
        (r / "clip_binary.txt").write_bytes(b"\xff\xfe\x00\x01")
        # SMPL models
        model = tiny_smpl()
        np.savez(r / "smpl_ok.npz", **model)
        (r / "smpl_ok.pkl").write_bytes(pickle.dumps(model))
        np.savez(r / "smpl_lacks.npz", **{k: v for k, v in model.items() if k != "posedirs"})
        np.savez(r / "smpl_bad_faces.npz", **{**model, "f": np.array([[0, 1, 99]])})
        np.savez(r / "smpl_nan.npz", **{**model, "v_template": np.full((24, 3), np.nan)})
        np.savez(r / "smpl_shape.npz", **{**model, "weights": np.eye(24)[:, :20]})
        (r / "smpl_trunc.pkl").write_bytes(pickle.dumps(model)[:40])
        (r / "smpl_list.pkl").write_bytes(pickle.dumps([1, 2]))
        (r / "smpl_trunc.npz").write_bytes((r / "smpl_ok.npz").read_bytes()[:100])
        # INTERACTION tracks
        from domains.traffic.data.interaction import TRACK_COLUMNS

        head = ",".join(TRACK_COLUMNS)
        (r / "tracks_header.csv").write_text("a,b,c\n1,2,3\n")
        (r / "tracks_only_header.csv").write_text(head + "\n")
        (r / "tracks_short_row.csv").write_text(head + "\n1,1,100,car,0,0,0,0,0,4\n")
        (r / "tracks_text.csv").write_text(head + "\n1,1,100,car,zero,0,0,0,0,4,2\n")
        (r / "tracks_nan.csv").write_text(head + "\n1,1,100,car,nan,0,0,0,0,4,2\n")
        (r / "tracks_neg.csv").write_text(head + "\n1,1,100,car,0,0,0,0,0,-4,2\n")
        (r / "tracks_binary.csv").write_bytes(b"\xff\xfe\x00garbage")
        # SUMO networks
        net = (
            '<net version="1.20"><location netOffset="0,0" convBoundary="0,0,100,0" origBoundary="0,0,100,0" '
            'projParameter="!"/><edge id="e" from="a" to="b"><lane id="e_0" index="0" speed="13" length="100" '
            'shape="0,0 100,0"/></edge><junction id="a" type="dead_end" x="0" y="0" incLanes="" intLanes="" '
            'shape="0,-2 0,2"/><junction id="b" type="dead_end" x="100" y="0" incLanes="e_0" intLanes="" '
            'shape="100,-2 100,2"/></net>'
        )
        (r / "ok.net.xml").write_text(net)
        (r / "trunc.net.xml").write_text(net[: len(net) // 2])
        (r / "trunc.net.xml.gz").write_bytes(gzip.compress(net.encode())[:40])
        (r / "routes.net.xml").write_text('<routes><vehicle id="v" depart="0"/></routes>')
        (r / "garbage.net.xml").write_bytes(b"\x89PNG\x00\x01 not xml")
        (r / "empty.net.xml").write_text("")
        # lanelet2 maps
        (r / "trunc.osm").write_text('<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="0" lon="0"/>')
        (r / "nolanelet.osm").write_text('<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="0" lon="0"/></osm>')
        (r / "garbage.osm").write_bytes(b"\x00\x01garbage")
        # traffic scene files
        (r / "scenes" / "networks").mkdir(parents=True)  # one network file per split: truncated, partial, missing
        (r / "scenes" / "networks" / "train-a.scenes.npz").write_bytes(whole[:30])
        np.savez(r / "scenes" / "networks" / "val-a.scenes.npz", boxes=np.zeros((2, 3, 5), np.float32))
        (r / "scenes" / "manifest.json").write_text(json.dumps({"digest": "x", "networks": [
            {"name": f"{s}-a", "split": s} for s in ("train", "val", "test")]}))
        (r / "scenes_bad").mkdir()
        (r / "scenes_bad" / "manifest.json").write_text('{"digest": ')
        (r / "scenes_list.json").write_text("[1, 2]")
        (r / "scenes_other.json").write_text('{"format": "something else", "scenes": []}')
        # motion windows
        (r / "windows_trunc.npz").write_bytes(whole[:40])


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> _Files:
    return _Files(tmp_path_factory.mktemp("bad-files"))


def _boxes(*rows):
    return np.array([rows], dtype=np.float64)


CAR = (0.0, 0.0, 0.0, 4.0, 2.0)
ROAD = shapely.box(-50, -5, 50, 5)
BOW_TIE = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])  # self-intersecting
LINE = np.array([[0.0, 0.0], [10.0, 0.0]])
MOTION_OK = np.zeros((1, 5, 4, 3))


def _body_forward(f, **kw):
    from domains.motion.body import Body

    args = {"global_orient": np.zeros((3, 3)), "body_pose": np.zeros((3, 69)), "transl": np.zeros((3, 3)), **kw}
    return Body(tiny_smpl(), "tiny").forward(**args)


def _traffic(**kw):
    from domains.traffic import TrafficDomain

    return TrafficDomain(**kw)


def _motion_oracle(samples, cond=None):
    from oracles.motion import motion_oracle

    return motion_oracle()(samples, cond)


def _roadmap(area, lines=(LINE,), widths=(3.0,)):
    from domains.traffic.map import RoadMap

    return RoadMap(area, list(lines), widths)


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


# ------------------------------------------------------------------------- lazy imports of the domain modules
def _offroad(boxes, area, tolerance=0.3):
    from oracles.traffic import offroad

    return offroad(boxes, None, area, tolerance)


def _read_sumo(path):
    from domains.traffic.map import read_sumo_net

    return read_sumo_net(path)


def _read_lanelet2(path):
    from domains.traffic.map import read_lanelet2_map

    return read_lanelet2_map(path)


def _read_tracks(path):
    from domains.traffic.data.interaction import read_tracks

    return read_tracks(path)


def _load_interaction(tracks, map_file):
    from domains.traffic.data.interaction import load_interaction

    return load_interaction(tracks, map_file)


def _load_scenes(folder, split):
    from domains.traffic.data.store import load_scenes

    return load_scenes(folder, split)


def _read_manifest(folder):
    from domains.traffic.data.store import read_manifest

    return read_manifest(folder)


def _read_scenes_json(path):
    from domains.traffic.export import read_scenes_json

    return read_scenes_json(path)


def _sumo_home():
    from domains.traffic.data.sumo import sumo_home

    return sumo_home()


def _load_amass(path, fps=20.0):
    from domains.motion.data.amass import load_amass

    return load_amass(path, fps=fps)


def _read_clip(path):
    from domains.motion.data.deepmimic import read_clip

    return read_clip(path)


def _clip_paths():
    from domains.motion.data.deepmimic import default_clip_paths

    return default_clip_paths()


def _load_smpl(path):
    from domains.motion.body import load_smpl_file

    return load_smpl_file(path)


def _load_windows(path, split=None):
    from domains.motion.data.windows import load_windows

    return load_windows(path, split)


def _motion_domain(**kw):
    from domains.motion import MotionDomain

    return MotionDomain(**kw)


def _thresholds(*args):
    from oracles.motion import MotionThresholds

    return MotionThresholds(*args)


# ---------------------------------------------------------------------------------------------------- the table
CASES: list[Bad] = [
    # --- engine: samples, sigmas, denoisers
    Bad("decode NaN", lambda f: TOY.decode(torch.tensor([[NAN, 0.0]])), ValueError, "NaN"),
    Bad("decode inf", lambda f: TOY.decode(torch.tensor([[INF, 0.0]])), ValueError, "NaN or inf"),
    Bad("decode wrong shape", lambda f: TOY.decode(torch.zeros(3, 3)), ValueError, r"shape \[B, 2\]"),
    Bad("decode empty batch", lambda f: TOY.decode(torch.zeros(0, 2)), ValueError, "empty batch"),
    Bad("decode integer dtype", lambda f: TOY.decode(torch.zeros(3, 2, dtype=torch.int64)), ValueError, "floating point"),
    Bad("decode numpy instead of tensor", lambda f: TOY.decode(np.zeros((3, 2))), TypeError, "torch.Tensor"),
    Bad("validate_x0 1-D", lambda f: validate_x0(torch.zeros(4), (2,)), ValueError, "shape"),
    Bad("heun NaN noise", lambda f: sample_heun(identity, torch.tensor([[NAN, 0.0]]), SIGMAS), ValueError, "initial noise x"),
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
    # --- traffic oracles: boxes and drivable areas
    *[
        Bad(f"boxes: {name}", (lambda b, d: lambda f: __import__("oracles.traffic").traffic.collision(b, d))(b, d),
            ValueError, m)
        for name, b, d, m in [
            ("2-D array", np.zeros((2, 5)), None, r"\[B, N, 5\]"),
            ("4 fields", np.zeros((1, 2, 4)), None, r"\[B, N, 5\]"),
            ("empty batch", np.zeros((0, 3, 5)), None, "no scene"),
            ("empty scene", np.zeros((2, 0, 5)), None, "no vehicle slot"),
            ("no defined vehicle", _boxes(CAR), np.array([[False]]), "no defined vehicle"),
            ("NaN", _boxes(CAR, (NAN, 0, 0, 4, 2)), None, "NaN or inf"),
            ("inf", _boxes(CAR, (0, INF, 0, 4, 2)), None, "NaN or inf"),
            ("zero length", _boxes(CAR, (5, 0, 0, 0.0, 2)), None, "non-positive length or width"),
            ("negative width", _boxes(CAR, (5, 0, 0, 4, -2)), None, "non-positive length or width"),
            ("mask of wrong shape", _boxes(CAR), np.array([True, False]), "defined must have shape"),
            ("mask not boolean", _boxes(CAR, CAR), np.array([[0.5, 1.0]]), "boolean mask"),
            ("text", np.full((1, 2, 5), "x"), None, "numeric array"),
        ]
    ],
    Bad("offroad self-intersecting area", lambda f: _offroad(_boxes(CAR), BOW_TIE), ValueError, "Self-intersection"),
    Bad("offroad area without area", lambda f: _offroad(_boxes(CAR), shapely.LineString(LINE)), ValueError,
        "without area"),
    Bad("offroad area count", lambda f: _offroad(_boxes(CAR), [ROAD, ROAD]), ValueError, "one geometry or 1"),
    Bad("offroad area not a geometry", lambda f: _offroad(_boxes(CAR), ["road"]), ValueError, "Shapely geometries"),
    Bad("offroad NaN tolerance", lambda f: _offroad(_boxes(CAR), ROAD, tolerance=NAN), ValueError, "tolerance"),
    Bad("traffic oracle without boxes", lambda f: get_oracle("traffic:scene")({"defined": np.ones((1, 1), bool)}),
        KeyError, "boxes"),
    Bad("traffic oracle without area", lambda f: get_oracle("traffic:offroad")({"boxes": _boxes(CAR)}), KeyError,
        "drivable_area"),
    # --- road maps
    Bad("road map self-intersecting", lambda f: _roadmap(BOW_TIE), ValueError, "Self-intersection"),
    Bad("road map line as area", lambda f: _roadmap(shapely.LineString(LINE)), ValueError, "without area"),
    Bad("road map empty area", lambda f: _roadmap(shapely.Polygon()), ValueError, "non-empty"),
    Bad("road map NaN centreline", lambda f: _roadmap(ROAD, [np.array([[0.0, 0.0], [NAN, 1.0]])]), ValueError,
        "centreline 0 must be a finite"),
    Bad("road map one-point centreline", lambda f: _roadmap(ROAD, [np.zeros((1, 2))]), ValueError, "K >= 2"),
    Bad("road map zero width", lambda f: _roadmap(ROAD, widths=(0.0,)), ValueError, "widths must be finite and > 0"),
    Bad("road map no lanes", lambda f: _roadmap(ROAD, [], []), ValueError, ">= 1 centreline"),
    Bad("road map crop radius 0", lambda f: _roadmap(ROAD).crop((0, 0), 0.0, 0.0, 5, 4), ValueError, "radius > 0"),
    Bad("road map crop NaN centre", lambda f: _roadmap(ROAD).crop((NAN, 0), 0.0, 10.0, 5, 4), ValueError, "finite"),
    # --- SUMO networks
    *file_cases("SUMO net", _read_sumo, [
        ("missing", "no_such.net.xml", FileNotFoundError, "map file not found"),
        ("empty", "empty.net.xml", ValueError, "map file is empty"),
        ("truncated", "trunc.net.xml", ValueError, "trunc.net.xml is not a readable SUMO network"),
        ("truncated gzip", "trunc.net.xml.gz", ValueError, "not a readable SUMO network"),
        ("binary garbage", "garbage.net.xml", ValueError, "not a readable SUMO network"),
        ("of routes, not roads", "routes.net.xml", ValueError, "no lane allows vehicle class"),
    ]),
    # --- lanelet2 maps
    *file_cases("lanelet2 map", _read_lanelet2, [
        ("missing", "no_such.osm", FileNotFoundError, "map file not found"),
        ("empty", "empty.txt", ValueError, "map file is empty"),
        ("truncated", "trunc.osm", ValueError, "trunc.osm is not a readable lanelet2 map"),
        ("binary garbage", "garbage.osm", ValueError, "not a readable lanelet2 map"),
        ("without lanelets", "nolanelet.osm", ValueError, "no drivable lanelet"),
    ]),
    # --- INTERACTION tracks
    *file_cases("INTERACTION tracks", _read_tracks, [
        ("missing", "no_such.csv", FileNotFoundError, "track file not found"),
        ("empty", "empty.txt", ValueError, "not an INTERACTION vehicle track file"),
        ("wrong header", "tracks_header.csv", ValueError, "not an INTERACTION vehicle track file"),
        ("header only", "tracks_only_header.csv", ValueError, "no rows"),
        ("truncated row", "tracks_short_row.csv", ValueError, "malformed row"),
        ("text in a number column", "tracks_text.csv", ValueError, "malformed row"),
        ("NaN", "tracks_nan.csv", ValueError, "NaN or inf"),
        ("negative length", "tracks_neg.csv", ValueError, "non-positive length or width"),
        ("binary", "tracks_binary.csv", ValueError, "not a readable CSV"),
    ]),
    Bad("INTERACTION without track files", lambda f: _load_interaction([], f.path("nolanelet.osm")), ValueError,
        "at least one"),
    # --- traffic scene data and exports
    Bad("traffic scenes truncated", lambda f: _load_scenes(f.path("scenes"), "train"), ValueError,
        "train-a.scenes.npz is not a readable"),
    Bad("traffic scenes lacking arrays", lambda f: _load_scenes(f.path("scenes"), "val"), ValueError, "lacks"),
    Bad("traffic scenes missing network", lambda f: _load_scenes(f.path("scenes"), "test"), FileNotFoundError,
        "test-a.scenes.npz"),
    Bad("traffic scenes unknown split", lambda f: _load_scenes(f.path("scenes"), "dev"), ValueError, "unknown split"),
    Bad("traffic manifest truncated", lambda f: _read_manifest(f.path("scenes_bad")), ValueError, "truncated"),
    Bad("traffic scene JSON truncated", lambda f: _read_scenes_json(f.path("trunc.json")), ValueError, "truncated"),
    Bad("traffic scene JSON a list", lambda f: _read_scenes_json(f.path("scenes_list.json")), ValueError,
        "not a genneg traffic scene file"),
    Bad("traffic scene JSON other format", lambda f: _read_scenes_json(f.path("scenes_other.json")), ValueError,
        "not a genneg traffic scene file"),
    Bad("traffic scene JSON missing", lambda f: _read_scenes_json(f.path("nope.json")), FileNotFoundError,
        "nope.json"),
    Bad("traffic unknown data preset", lambda f: _traffic(preset="huge"), ValueError, "unknown SUMO data preset"),
    Bad("traffic map_lines out of range", lambda f: _traffic(preset="tiny", map_lines=0), ValueError, "map_lines"),
    Bad("traffic max_vehicles 0", lambda f: _traffic(preset="tiny", max_vehicles=0), ValueError, "max_vehicles"),
    # --- AMASS
    *file_cases("AMASS", _load_amass, [
        ("missing", "no_such.npz", FileNotFoundError, "AMASS file not found"),
        ("truncated", "amass_trunc.npz", ValueError, "amass_trunc.npz is not a readable AMASS .npz"),
        ("not an npz", "garbage.bin", ValueError, "is not a readable AMASS .npz"),
        ("with pickled objects", "amass_pickle.npz", ValueError, "pickled objects"),
        ("lacking trans", "amass_lacks.npz", ValueError, r"lacks \['trans', 'mocap_framerate'\]"),
        ("poses of 70 numbers", "amass_shape.npz", ValueError, r"poses must be \[N, 72 \| 156 \| 165\]"),
        ("NaN poses", "amass_nan.npz", ValueError, "NaN"),
        ("infinite trans", "amass_inf_trans.npz", ValueError, "NaN or infinite"),
        ("frame rate 0", "amass_fps0.npz", ValueError, "mocap_framerate must be one positive number"),
        ("two frame rates", "amass_fps_many.npz", ValueError, "mocap_framerate must be one positive number"),
        ("one frame", "amass_one_frame.npz", ValueError, ">= 2 frames"),
        ("text poses", "amass_text.npz", ValueError, "numeric"),
    ]),
    Bad("AMASS target fps NaN", lambda f: _load_amass(f.path("amass_ok.npz"), fps=NAN), ValueError, "fps"),
    # --- DeepMimic clips
    *file_cases("DeepMimic clip", _read_clip, [
        ("missing", "no_such.txt", FileNotFoundError, "DeepMimic clip not found"),
        ("empty", "empty.txt", ValueError, "invalid JSON, truncated"),
        ("truncated", "clip_trunc.txt", ValueError, "clip_trunc.txt: not a DeepMimic clip"),
        ("binary", "clip_binary.txt", ValueError, "not a DeepMimic clip"),
        ("a JSON list", "clip_list.txt", ValueError, "'Frames' list"),
        ("frames of 40 numbers", "clip_width.txt", ValueError, "frames of 44 numbers"),
        ("one frame", "clip_one.txt", ValueError, ">= 2 frames"),
        ("NaN", "clip_nan.txt", ValueError, "NaN"),
        ("text", "clip_text.txt", ValueError, "numbers only"),
        ("booleans", "clip_bool.txt", ValueError, "numbers only"),
        ("zero frame duration", "clip_zero_dt.txt", ValueError, "positive duration"),
        ("zero quaternion", "clip_zero_quat.txt", ValueError, "zero-length"),
    ]),
    # --- SMPL models
    *file_cases("SMPL model", _load_smpl, [
        ("missing", "no_such.pkl", FileNotFoundError, "SMPL model file not found"),
        ("truncated pickle", "smpl_trunc.pkl", ValueError, "not a readable SMPL pickle"),
        ("garbage pickle", "garbage.bin", ValueError, "not a readable SMPL pickle"),
        ("pickle of a list", "smpl_list.pkl", ValueError, "must hold a dict"),
        ("truncated npz", "smpl_trunc.npz", ValueError, "not a readable SMPL model .npz"),
        ("npz with pickled objects", "object.npz", ValueError, "pickled objects"),
        ("lacking posedirs", "smpl_lacks.npz", ValueError, r"lacks \['posedirs'\]"),
        ("faces out of range", "smpl_bad_faces.npz", ValueError, "faces 'f' must be"),
        ("NaN template", "smpl_nan.npz", ValueError, "NaN|finite"),
        ("weights of wrong shape", "smpl_shape.npz", ValueError, "weights has shape"),
    ]),
    Bad("body pose of wrong width", lambda f: _body_forward(f, body_pose=np.zeros((3, 72))), ValueError,
        r"body_pose must have shape \[T, 69\]"),
    Bad("body NaN orientation", lambda f: _body_forward(f, global_orient=np.full((3, 3), NAN)), ValueError, "NaN"),
    Bad("body frame counts differ", lambda f: _body_forward(f, transl=np.zeros((4, 3))), ValueError,
        "frame counts differ"),
    # --- motion windows and oracles
    Bad("motion windows truncated", lambda f: _load_windows(f.path("windows_trunc.npz")), ValueError,
        "windows_trunc.npz is not a readable motion windows .npz"),
    Bad("motion windows lacking arrays", lambda f: _load_windows(f.path("plain.npz")), ValueError, "lacks"),
    Bad("motion windows missing", lambda f: _load_windows(f.path("nope.npz")), FileNotFoundError, "nope.npz"),
    Bad("motion windows unknown split", lambda f: _load_windows(f.path("plain.npz"), "dev"), ValueError, "split"),
    Bad("motion window config", lambda f: _motion_domain(min_frames=1), ValueError, "min_frames"),
    Bad("motion unknown clip", lambda f: _motion_domain(clips=("moonwalk",)).data, ValueError, "unknown clips"),
    *[
        Bad(f"motion oracle {name}", (lambda s: lambda f: _motion_oracle(s))(s), err, m)
        for name, s, err, m in [
            ("not a mapping", [1, 2], TypeError, "mapping with 'vertices'"),
            ("without vertices", {"joints": np.zeros((1, 5, 24, 3))}, KeyError, "vertices"),
            ("without joints", {"vertices": MOTION_OK}, KeyError, "joints"),
            ("vertices 3-D", {"vertices": np.zeros((5, 4, 3)), "toes": np.zeros((1, 5, 2, 3))}, ValueError,
             r"\[B, T, N, 3\]"),
            ("empty batch", {"vertices": np.zeros((0, 5, 4, 3)), "toes": np.zeros((0, 5, 2, 3))}, ValueError,
             "non-empty"),
            ("NaN vertices", {"vertices": np.full((1, 5, 4, 3), NAN), "toes": np.zeros((1, 5, 2, 3))}, ValueError,
             "NaN"),
            ("three toes", {"vertices": MOTION_OK, "toes": np.zeros((1, 5, 3, 3))}, ValueError, "2 points per frame"),
            ("no defined frame", {"vertices": MOTION_OK, "toes": np.zeros((1, 5, 2, 3)),
                                  "defined": np.zeros((1, 5), bool)}, ValueError, "at least one defined frame"),
            ("fps 0", {"vertices": MOTION_OK, "toes": np.zeros((1, 5, 2, 3)), "fps": 0.0}, ValueError, "fps"),
            ("two fps", {"vertices": MOTION_OK, "toes": np.zeros((1, 5, 2, 3)), "fps": np.array([20.0, 30.0])},
             ValueError, "fps must be one number"),
        ]
    ],
    Bad("motion thresholds", lambda f: _thresholds(10.0, 1.5, 30.0, 1.0), ValueError, "skating_ratio"),
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
            ("sample zero", ["sample", "--run-dir", "{d}/run_base", "--n", "0", "--out", "{d}/s.npz"], "n must be >= 1"),
            ("sample of an unknown split", ["sample", "--run-dir", "{d}/run_base", "--split", "dev", "--n", "4",
                                            "--out", "{d}/s.npz"], "unknown split"),
            ("presets of an unknown domain", ["presets", "nope"], "unknown domain 'nope'"),
            ("data of a generated domain", ["data", "toy", "--preset", "tiny"], "on the fly"),
            ("new domain with a bad name", ["new-domain", "Bad-Name", "--dir", "{d}/new"], "lower-case Python"),
            ("train into a finished folder", ["train", "toy", "--preset", "tiny", "--run-dir", "{d}/run_base"],
             "--resume"),
        ]
    ],
    # --- missing optional extras: the error names the extra to install
    Bad("no sumolib", without(["sumolib"], lambda f: _read_sumo(f.path("ok.net.xml"))), ImportError,
        r"genneg\[traffic\]"),
    Bad("no lanelet2", without(["lanelet2", "lanelet2.projection"], lambda f: _read_lanelet2(f.path("trunc.osm"))),
        ImportError, r"genneg\[traffic\]"),
    Bad("no SUMO", without(["sumo"], lambda f: _sumo_home()), ImportError, r"genneg\[traffic\]"),
    Bad("no smplx", without(["smplx"], lambda f: _body_forward(f)), ImportError, r"genneg\[motion\]"),
    Bad("no pybullet", without(["pybullet_data"], lambda f: _clip_paths()), ImportError, r"genneg\[motion\]"),
    Bad("no shapely for the traffic domain",
        without(["shapely"], lambda f: get_domain("traffic"), fresh=("domains.traffic", "oracles.traffic")),
        ModuleNotFoundError, r"needs the module 'shapely'.*genneg\[traffic\]"),
    Bad("no scipy for the motion domain",
        without(["scipy", "scipy.spatial", "scipy.spatial.transform"], lambda f: get_domain("motion"),
                fresh=("domains.motion", "oracles.motion")),
        ModuleNotFoundError, r"needs the module 'scipy.*genneg\[motion\]"),
]


# ---------------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_with_a_message_that_names_the_problem(case: Bad, files):
    with pytest.raises(case.error) as info:
        case.call(files)
    message = str(info.value.args[0]) if isinstance(info.value, KeyError) and info.value.args else str(info.value)
    assert message.strip(), f"{case.name}: the error has no message"
    import re

    assert re.search(case.match, message, flags=re.S), f"{case.name}: message {message!r} does not name the problem"


def test_the_table_is_large_and_its_names_unique():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names), sorted({n for n in names if names.count(n) > 1})
    assert len(CASES) >= 240, len(CASES)


def test_valid_files_of_the_same_kinds_are_accepted(files):
    """The readers above refuse the bad files, not every file: the good twins load."""
    from domains.motion.body import load_smpl_file
    from domains.motion.data.amass import load_amass
    from domains.traffic.map import read_sumo_net

    assert load_amass(files.path("amass_ok.npz")).root.shape[1] == 3
    assert load_smpl_file(files.path("smpl_ok.npz"))["v_template"].shape == (24, 3)
    assert load_smpl_file(files.path("smpl_ok.pkl"))["f"].shape == (1, 3)
    assert read_sumo_net(files.path("ok.net.xml")).drivable_area.area > 0
    assert _roadmap(ROAD).drivable_area.area == 1000
    assert read_npz(files.path("plain.npz"))["a"].shape == (3,)
