"""Pretrained model folders: the card describes the weights, and a folder that does not match the code is refused."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from genneg.domains.toy import ToyDomain
from genneg.cli import main
from genneg.curve import LearningCurve
from genneg.exporting import export_samples, exports
from genneg.generate import generate, sample_to_disk
from genneg.pretrained import (card_config, check_card, load_pretrained, read_card, resolve_folder, sha256_file,
                               write_model_folder)
from genneg.stages import load_stage

ROOT = Path(__file__).resolve().parents[2]
STEPS = 60


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny toy base trained by `genneg train` (curve every 30 steps) and written as a model folder."""
    tmp = tmp_path_factory.mktemp("pretrained")
    run = tmp / "run"
    assert main(["train", "toy", "--preset", "tiny", "--set", f"base.steps={STEPS}", "--set", "eval.num_samples=300",
                 "--set", "eval.num_nll=50", "--set", "classifier.steps=7", "--eval-every", "30", "--run-dir", str(run),
                 "--device", "cpu", "--quiet"]) == 0
    assert main(["export-model", "--run-dir", str(run), "--out", str(tmp / "toy-tiny")]) == 0
    return tmp / "toy-tiny"


@pytest.fixture
def domain_cfg(model_dir):
    cfg = card_config(read_card(model_dir))
    return ToyDomain(**cfg.data), cfg


def test_card_describes_the_weights_and_the_run(model_dir):
    card = read_card(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == ["card.json", "card.md", "curve.json", "curve.png",
                                                           "model.safetensors"]
    assert card["weights"]["sha256"] == sha256_file(model_dir / "model.safetensors")
    assert card["domain"] == "toy" and card["preset"] == "tiny" and card["training"]["steps"] == STEPS
    assert card["training"]["wall_seconds"] > 0 and card["training"]["machine"] and card["training"]["code_commit"]
    assert card["data"]["config"] == card["config"]["data"] and len(card["data"]["train_sha256"]) == 64
    assert card["architecture"]["net"] == {"width": 64, "depth": 2} and card["architecture"]["parameters"] > 0
    curve = json.loads((model_dir / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [30, 60]
    m = card["metrics"]
    assert m["step"] == STEPS and m["infraction"] == curve["points"][-1]["infraction"]
    assert m["infraction"]["total"]["lo"] <= m["infraction"]["total"]["rate"] <= m["infraction"]["total"]["hi"]
    assert m["nll"]["lo"] < m["nll"]["mean"] < m["nll"]["hi"]
    # the one command that reproduces it names the preset and every override a base training reads (not the
    # classifier's steps: `genneg train` never reads them)
    assert card["reproduce"].startswith("genneg train toy --preset tiny --set base.steps=60 --set "
                                        "eval.num_samples=300 --set eval.num_nll=50 --run-dir runs/toy-tiny-base && "
                                        "genneg export-model --run-dir runs/toy-tiny-base --out pretrained/toy-tiny")
    text = (model_dir / "card.md").read_text()
    assert card["reproduce"] in text and "curve.png" in text and "white_cell" in text


def test_loads_and_matches_the_run_weights(model_dir, domain_cfg):
    domain, cfg = domain_cfg
    model = load_pretrained(model_dir, domain, cfg)
    _, _, trained, folder = load_stage(model_dir.parent / "run", "base")
    x = torch.randn(16, 2)
    sigma = torch.full((16,), 0.3)
    assert folder == model_dir.parent / "run" and torch.equal(model(x, sigma), trained(x, sigma))


def test_corrupted_weights_are_refused_by_sha256(model_dir, domain_cfg, tmp_path):
    domain, cfg = domain_cfg
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    raw = bytearray((bad / "model.safetensors").read_bytes())
    raw[-5] ^= 0xFF  # one flipped bit pattern in the last tensor: still a loadable file, other weights
    (bad / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted or was replaced: its sha256"):
        load_pretrained(bad, domain, cfg)


@pytest.mark.parametrize("change, field", [
    (lambda cfg: replace(cfg, net={"width": 32, "depth": 2}), "architecture.net"),
    (lambda cfg: replace(cfg, data={**cfg.data, "n_train": 5000}), "data.config"),
])
def test_a_run_of_another_config_is_refused(model_dir, domain_cfg, change, field):
    domain, cfg = domain_cfg
    cfg = change(cfg)
    with pytest.raises(ValueError, match=rf"card's {field} .* retrain it: genneg train toy --preset tiny"):
        load_pretrained(model_dir, ToyDomain(**cfg.data), cfg)


@pytest.mark.parametrize("field, key", [("architecture", "sha256"), ("data", "train_sha256"), ("probe", None)])
def test_a_card_the_current_code_does_not_reproduce_is_refused(model_dir, domain_cfg, tmp_path, field, key):
    """What a code change looks like to a shipped card: another layout, other training data, other outputs."""
    domain, cfg = domain_cfg
    stale = tmp_path / "stale"
    shutil.copytree(model_dir, stale)
    card = read_card(stale)
    if key is None:
        card[field] = [v + 0.01 for v in card[field]]
    else:
        card[field][key] = "0" * 64
    (stale / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="retrain it: genneg train toy"):
        load_pretrained(stale, domain, cfg)


def test_export_refuses_unfinished_runs_and_existing_folders(model_dir, domain_cfg, tmp_path):
    domain, cfg = domain_cfg
    with pytest.raises(FileNotFoundError, match="has not finished"):
        write_model_folder(tmp_path, tmp_path / "out", domain, cfg, domain.presets())
    with pytest.raises(ValueError, match="already exists; pass --force"):
        write_model_folder(model_dir.parent / "run", model_dir, domain, cfg, domain.presets())


def test_a_folder_exported_with_a_sampler_samples_and_is_measured_with_it(model_dir, tmp_path, capsys):
    """`export-model --sampler`: the card's rows are what `genneg eval` of the folder gives, sample for sample, and
    the folder samples what `--sampler` gives from the plain folder; the learning curve's rows stay beside them."""
    run, out = model_dir.parent / "run", tmp_path / "toy-tiny-churn"
    assert main(["export-model", "--run-dir", str(run), "--out", str(out), "--sampler", "stochastic:8"]) == 0
    card, plain = read_card(out), read_card(model_dir)
    assert card["config"]["sampler"]["kind"] == "stochastic" and card["config"]["sampler"]["steps"] == 8
    assert card["metrics"]["sampler"] == {"kind": "stochastic", "steps": 8}
    assert card["metrics"]["curve"]["infraction"] == plain["metrics"]["infraction"]
    assert card["metrics"]["curve"]["sampler"] == {"kind": plain["config"]["sampler"]["kind"],
                                                   "steps": plain["config"]["sampler"]["steps"]}
    assert card["weights"] == plain["weights"] and card["metrics"]["nll"] == plain["metrics"]["nll"]
    assert card["reproduce"] == plain["reproduce"].replace("toy-tiny", "toy-tiny-churn") + " --sampler stochastic:8"
    assert main(["eval", "--run-dir", str(out), "--out", str(tmp_path / "e.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["infraction"] == card["metrics"]["infraction"]
    for folder, extra, name in ((out, [], "a"), (model_dir, ["--sampler", "stochastic:8"], "b")):
        assert main(["sample", "--run-dir", str(folder), "--n", "30", "--seed", "2", "--out",
                     str(tmp_path / f"{name}.npz"), "--quiet", *extra]) == 0
    assert np.array_equal(np.load(tmp_path / "a.npz")["samples"], np.load(tmp_path / "b.npz")["samples"])
    text = (out / "card.md").read_text()
    assert "`stochastic:8` |" in text and "(learning curve)" in text and "--sampler stochastic:8" in text
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["export-model", "--run-dir", str(run), "--out", str(tmp_path / "x"), "--sampler", "euler:8"])
    assert "euler" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_curve_replaces_replayed_points(domain_cfg, tmp_path):
    """A resumed training evaluates the replayed steps again: one point per step, in order."""
    domain, cfg = domain_cfg
    curve = LearningCurve(tmp_path, domain, cfg, domain.oracle(), every=30)
    point = {"infraction": {"total": {"rate": 0.5, "lo": 0.4, "hi": 0.6}, "reasons": {}}, "seconds_per_1000": 1.0}
    for step in (30, 60, 90, 60, 90, 120):
        curve.add({"step": step, **point})
    again = LearningCurve(tmp_path, domain, cfg, domain.oracle(), every=30)
    assert [p["step"] for p in again.points] == [30, 60, 90, 120]
    assert again.due(60) and not again.due(61) and again.due(cfg.base.steps)


class ExportingToy(ToyDomain):
    """The toy domain with an export format, as a traffic or motion domain has one."""

    def export(self, samples, cond, result, path):
        Path(path).write_text(json.dumps({"points": samples.tolist(), "valid": result.valid.tolist(),
                                          "reasons": {k: v.tolist() for k, v in result.reasons.items()}}))


def test_a_domain_export_gets_the_same_rows_as_the_stream(model_dir, domain_cfg, tmp_path):
    domain, cfg = domain_cfg
    model = load_pretrained(model_dir, domain, cfg)
    sampler = replace(cfg.sampler, batch_size=16)
    exporting = ExportingToy(**cfg.data)
    assert exports(exporting, "x.json") and not exports(exporting, "x.npz") and not exports(domain, "x.json")
    out = export_samples(model, exporting, 40, sampler, tmp_path / "s.json", oracle=domain.oracle(), seed=3)
    streamed = sample_to_disk(model, domain, 40, sampler, tmp_path / "s.npz", oracle=domain.oracle(), seed=3)
    got, ref = json.loads((tmp_path / "s.json").read_text()), np.load(tmp_path / "s.npz")
    assert np.array_equal(np.array(got["points"]), ref["samples"])
    assert got["valid"] == ref["valid"].tolist() and got["reasons"]["white_cell"] == ref["reason_white_cell"].tolist()
    assert out["invalid"] == streamed["invalid"] == int((~ref["valid"]).sum())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left
    with pytest.raises(ValueError, match="does not export '.npz'"):
        export_samples(model, exporting, 4, sampler, tmp_path / "s2.npz", oracle=domain.oracle())


SHIPPED = sorted(p.parent.name for p in (ROOT / "pretrained").glob("*/card.json"))


def check_shipped(folder: Path) -> None:
    """What every shipped model must pass: its card matches the code's preset, it loads and it samples."""
    from genneg.domain import get_domain
    from genneg.labelling import label

    card = read_card(folder)
    cfg = replace(get_domain(card["domain"]).presets()[card["preset"]], seed=card["seed"])
    domain = get_domain(cfg.domain, **cfg.data)
    check_card(card, domain, cfg, folder)  # the preset as the code defines it today
    model = load_pretrained(folder, domain, cfg)
    cond = domain.conditions(8, "test", 0)
    x0 = generate(model, domain.sample_shape, 8, replace(cfg.sampler, steps=4), cond, seed=0)
    assert torch.isfinite(x0).all()
    assert len(label(domain.oracle(), domain.decode(x0, cond), cond).valid) == 8


def check_shipped_without_data(folder: Path) -> None:
    """What can be checked without the model's training data: the weights' sha256, the preset's data config and
    network against the card's, the architecture (``check_card(data=False)``), and that the weights load."""
    from genneg.domain import get_domain
    from genneg.models import load_denoiser
    from genneg.pretrained import verify_weights

    card = read_card(folder)
    cfg = replace(get_domain(card["domain"]).presets()[card["preset"]], seed=card["seed"], device="cpu")
    domain = get_domain(cfg.domain, **cfg.data)  # builds no data
    check_card(card, domain, cfg, folder, data=False)
    model = load_denoiser(domain, cfg, verify_weights(folder, card))
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_matches_the_code(name):
    """A code change that orphans a shipped model fails here: retrain it (its card says how) or stay compatible."""
    check_shipped_without_data(resolve_folder(ROOT / "pretrained" / name))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_matches_its_data_and_samples(name):
    """The full check: the training data's hash, the probe and a few samples. A domain whose data takes long to
    make (traffic's ``cpu`` SUMO scenes: about 10 min on 2 cores) is checked only where its data is generated."""
    from genneg.domain import get_domain

    folder = resolve_folder(ROOT / "pretrained" / name)
    card = read_card(folder)
    domain = get_domain(card["domain"], **get_domain(card["domain"]).presets()[card["preset"]].data)
    if callable(getattr(domain, "data_ready", None)) and not domain.data_ready():
        pytest.skip(f"{name}: its training data is not generated here; `genneg data {card['domain']} --preset "
                    f"{card['preset']}` makes it (test_every_shipped_model_matches_the_code ran without it)")
    check_shipped(folder)


def test_the_shipped_model_check_passes_a_fresh_folder(model_dir):
    check_shipped(model_dir)


def test_the_data_free_check_catches_a_changed_preset_and_a_corrupted_file(model_dir, tmp_path, monkeypatch):
    folder = tmp_path / model_dir.name
    shutil.copytree(model_dir, folder)
    check_shipped_without_data(folder)
    tiny = ToyDomain().presets()["tiny"]
    monkeypatch.setattr(ToyDomain, "presets", lambda self: {"tiny": replace(tiny, net={**tiny.net, "width": 7})})
    with pytest.raises(ValueError, match=r"card's architecture\.net .* does not match this run's net config"):
        check_shipped_without_data(folder)
    monkeypatch.undo()
    weights = folder / read_card(folder)["weights"]["file"]
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))
    with pytest.raises(ValueError, match="corrupted"):
        check_shipped_without_data(folder)
