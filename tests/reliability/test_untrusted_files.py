"""Untrusted files execute nothing: pickle payloads against every loader that reads a user's file, and a scan of the
source tree for the patterns that could (eval/exec, pickle, torch.load without weights_only, np.load with pickles).

Each payload, if it ran, would create a marker file; the loaders must refuse it with a clear error and the marker
must not exist afterwards.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from genneg.checkpoint import load_state, load_weights, read_npz

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("genneg", "domains", "oracles", "benchmarks")
PROTOCOLS = (0, 2, 4, 5)


class _Payload:
    """Unpickling this runs ``touch marker`` (through whichever callable ``how`` names)."""

    def __init__(self, marker: Path, how: str = "system"):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        if self.how == "eval":
            return (eval, (f"open({str(self.marker)!r}, 'w').close()",))
        if self.how == "exec":
            return (exec, (f"open({str(self.marker)!r}, 'w').close()",))
        import subprocess

        return (subprocess.call, (["touch", str(self.marker)],))


PAYLOADS = [(how, p) for how in ("system", "eval", "exec", "subprocess") for p in PROTOCOLS]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload in an untrusted file was executed"


# ------------------------------------------------------------------------------------ train states (torch.load)
@pytest.mark.parametrize("how, protocol", PAYLOADS)
def test_train_state_pickle_payload_is_refused(tmp_path, marker, how, protocol):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"step": 1, "model": _Payload(marker, how)}, protocol=protocol))
    with pytest.raises(ValueError, match="refusing or unable to load train state"):
        load_state(path)


def test_train_state_in_torch_zip_format_with_payload_is_refused(tmp_path, marker):
    path = tmp_path / "evil.state.pt"
    torch.save({"step": 3, "rng": torch.zeros(3), "extra": _Payload(marker)}, path)  # the real torch.save format
    with pytest.raises(ValueError, match="refusing or unable"):
        load_state(path)


def test_a_resumed_run_refuses_a_poisoned_train_state(tmp_path, marker):
    """``train(..., resume=True)`` reads the state through load_state: a swapped-in payload stops the run."""
    from genneg.training import TrainConfig, train

    torch.save({"step": 1, "model": _Payload(marker)}, tmp_path / "net.state.pt")
    with pytest.raises(ValueError, match="refusing or unable"):
        train(torch.nn.Linear(2, 2), lambda m, b, g: (m(b) ** 2).sum(1), torch.zeros(4, 2),
              TrainConfig(steps=2, batch_size=2), run_dir=tmp_path, name="net", resume=True)


# ------------------------------------------------------------------------------------------ weights (safetensors)
def test_weights_file_holding_a_pickle_is_refused(tmp_path, marker):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_weights(path)


# ------------------------------------------------------------------------ .npz files: every reader, object arrays
def _evil_npz(path: Path, marker: Path, **plain) -> Path:
    np.savez(path, **plain, evil=np.array([_Payload(marker)], dtype=object))
    return path


def _as_scene_folder(npz: Path) -> Path:
    """A scene data folder whose one training network's file is ``npz`` (what ``generate_scenes`` writes)."""
    folder = npz.parent / "scenes"
    (folder / "networks").mkdir(parents=True)
    npz.rename(folder / "networks" / "evil.scenes.npz")
    (folder / "manifest.json").write_text(json.dumps({"networks": [{"name": "evil", "split": "train"}]}))
    return folder


def _readers():
    from genneg.domains.motion.body import load_smpl_file
    from genneg.domains.motion.data.amass import load_amass
    from genneg.domains.motion.data.windows import load_windows
    from genneg.domains.traffic.data.store import load_scenes
    from genneg.run import load_samples

    return {
        "read_npz": lambda p: read_npz(p),
        "AMASS": lambda p: load_amass(p),
        "SMPL model (.npz)": lambda p: load_smpl_file(p),
        "motion windows": lambda p: load_windows(p),
        "traffic scenes": lambda p: load_scenes(_as_scene_folder(p), "train"),
        "evaluation samples": lambda p: load_samples(p),
    }


@pytest.mark.parametrize("reader", ["read_npz", "AMASS", "SMPL model (.npz)", "motion windows", "traffic scenes",
                                    "evaluation samples"])
def test_npz_with_a_pickled_object_is_refused_by_every_reader(tmp_path, marker, reader):
    pytest.importorskip("shapely")
    path = _evil_npz(tmp_path / "train.npz", marker, poses=np.zeros((5, 72)), trans=np.zeros((5, 3)),
                     mocap_framerate=30.0, valid=np.ones(5, bool), defined=np.ones(5, bool))
    with pytest.raises(ValueError, match="pickled objects"):
        _readers()[reader](path)


# ------------------------------------------------------------------------------ SMPL pickles: restricted unpickler
@pytest.mark.parametrize("how, protocol", PAYLOADS)
def test_smpl_pickle_payload_is_refused_before_it_runs(tmp_path, marker, how, protocol):
    from genneg.domains.motion.body import UnsafePickleError, load_smpl_file

    path = tmp_path / "SMPL_NEUTRAL.pkl"
    path.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3)), "weights": _Payload(marker, how)},
                                  protocol=protocol))
    with pytest.raises(UnsafePickleError, match="refusing to load .*SMPL_NEUTRAL.pkl"):
        load_smpl_file(path)
    with pytest.raises(UnsafePickleError):
        load_smpl_file(tmp_path)  # a folder: smplx's convention, the same file


@pytest.mark.parametrize("gadget", [b"cbuiltins\ngetattr\n", b"cos\nsystem\n", b"cposix\nsystem\n",
                                    b"cnumpy\nload\n", b"cnumpy.testing._private.utils\nrunstring\n",
                                    b"cscipy.sparse\nload_npz\n", b"ctorch\nload\n", b"c__builtin__\nexec\n"])
def test_restricted_unpickler_resolves_no_other_global(gadget):
    from genneg.domains.motion.body import RestrictedUnpickler, UnsafePickleError

    with pytest.raises(UnsafePickleError, match="refusing to load"):
        RestrictedUnpickler(io.BytesIO(gadget + b"(S'x'\ntR.")).load()


def test_smpl_model_from_the_environment_goes_through_the_same_gate(tmp_path, marker, monkeypatch):
    from genneg.domains.motion.body import SMPL_MODEL_ENV, UnsafePickleError, load_body

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"f": _Payload(marker)}))
    monkeypatch.setenv(SMPL_MODEL_ENV, str(path))
    with pytest.raises(UnsafePickleError):
        load_body()


def test_plain_smpl_pickle_with_sparse_regressor_still_loads(tmp_path):
    """The gate refuses code, not data: numpy arrays and scipy.sparse matrices come back."""
    scipy_sparse = pytest.importorskip("scipy.sparse")
    from genneg.domains.motion.body import load_smpl_file
    from bad_inputs import tiny_smpl

    model = tiny_smpl()
    model["J_regressor"] = scipy_sparse.csc_matrix(model["J_regressor"])
    for protocol in PROTOCOLS:
        path = tmp_path / f"ok{protocol}.pkl"
        path.write_bytes(pickle.dumps(model, protocol=protocol))
        loaded = load_smpl_file(path)
        np.testing.assert_array_equal(loaded["J_regressor"], np.eye(24))


# ------------------------------------------------------------------------------------- config values stay data
def test_config_values_are_never_evaluated(tmp_path, marker):
    from genneg.cli import main

    code = f"__import__('os').system('touch {marker}')"
    err = io.StringIO()
    with pytest.raises(SystemExit, match="steps"), __import__("contextlib").redirect_stderr(err):
        main(["train", "toy", "--preset", "tiny", "--set", f"base.steps={code}", "--run-dir", str(tmp_path / "r")])


def test_xml_external_entities_are_not_expanded(tmp_path):
    """A SUMO network that names a local file as an external entity does not get that file's contents."""
    pytest.importorskip("sumolib")
    from genneg.domains.traffic.map import read_sumo_net

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    path = tmp_path / "xxe.net.xml"
    path.write_text(
        f'<?xml version="1.0"?>\n<!DOCTYPE net [<!ENTITY xxe SYSTEM "file://{secret}">]>\n'
        '<net version="1.20"><location netOffset="0,0" convBoundary="0,0,100,0" origBoundary="0,0,100,0" '
        'projParameter="!"/><edge id="e" from="a" to="b"><lane id="&xxe;" index="0" speed="13" length="100" '
        'shape="0,0 100,0"/></edge><junction id="a" type="dead_end" x="0" y="0" incLanes="" intLanes="" '
        'shape="0,-2 0,2"/><junction id="b" type="dead_end" x="100" y="0" incLanes="" intLanes="" '
        'shape="100,-2 100,2"/></net>')
    try:
        road = read_sumo_net(path)
    except ValueError:
        return  # refused outright: nothing was read
    assert "TOP-SECRET" not in repr(road.lines) and road.drivable_area.area > 0


# --------------------------------------------------------------------------- a scan of the source for bad patterns
_LOADERS = {"pickle", "_pickle", "cPickle", "dill", "marshal", "shelve", "joblib", "cloudpickle"}


def forbidden_calls(source: str, filename: str = "<src>") -> list[str]:
    """Calls in ``source`` that could run what a file or a config value contains.

    Flags: builtin ``eval``/``exec``/``compile``/``__import__``; ``load``/``loads``/``Unpickler`` of pickle-like
    modules; ``torch.load`` without ``weights_only=True``; ``np.load`` without ``allow_pickle=False``;
    any ``allow_pickle=True``; ``yaml.load``/``yaml.unsafe_load``; ``os.system``/``os.popen``;
    ``subprocess`` with ``shell=True``; and a subclass of ``pickle.Unpickler`` that does not override ``find_class``.
    """
    found = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b) for b in node.bases}
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if bases & {"pickle.Unpickler", "Unpickler"} and "find_class" not in methods:
                found.append(f"{filename}:{node.lineno}: Unpickler subclass without find_class")
            continue
        if not isinstance(node, ast.Call):
            continue
        func = ast.unparse(node.func)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        where = f"{filename}:{node.lineno}: {func}(...)"
        if isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec", "compile", "__import__"):
            found.append(where)
        elif isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            attr = node.func.attr
            if owner in _LOADERS and attr in ("load", "loads", "Unpickler"):
                found.append(where)
            elif owner == "torch" and attr == "load" and not _is_const(kw.get("weights_only"), True):
                found.append(where + " without weights_only=True")
            elif owner in ("np", "numpy") and attr == "load" and not _is_const(kw.get("allow_pickle"), False):
                found.append(where + " without allow_pickle=False")
            elif owner == "yaml" and attr in ("load", "unsafe_load", "load_all", "full_load"):
                found.append(where)
            elif owner == "os" and attr in ("system", "popen"):
                found.append(where)
            elif owner == "subprocess" and _is_const(kw.get("shell"), True):
                found.append(where + " with shell=True")
        if _is_const(kw.get("allow_pickle"), True):
            found.append(where + " with allow_pickle=True")
    return found


def _is_const(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _sources():
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, path.read_text()
    for path in sorted((ROOT / "genneg" / "templates").rglob("*.py.tmpl")):
        yield path, path.read_text().replace("NAME", "name").replace("{{", "").replace("}}", "")


def test_source_tree_has_no_forbidden_calls():
    found, scanned = [], 0
    for path, text in _sources():
        scanned += 1
        try:
            found += forbidden_calls(text, str(path.relative_to(ROOT)))
        except SyntaxError:
            if path.suffix == ".py":
                raise
    assert scanned > 50, f"only {scanned} files scanned: is the tree where the test thinks?"
    assert not found, "\n".join(found)


def test_every_loader_of_user_files_is_in_one_place():
    """torch.load and np.load appear only in genneg/checkpoint.py (load_state, read_npz); pickle.Unpickler is
    subclassed only by the SMPL restricted unpickler."""
    places = {}
    for path, text in _sources():
        rel = str(path.relative_to(ROOT))
        for pattern in (r"\btorch\.load\(", r"\bnp\.load\(|\bnumpy\.load\(", r"pickle\.Unpickler\b"):
            code = re.sub(r'("""|\'\'\')[\s\S]*?\1|#.*', "", text)  # docstrings and comments may mention them
            if re.search(pattern, code):
                places.setdefault(pattern, set()).add(rel)
    assert places.get(r"\btorch\.load\(") == {"genneg/checkpoint.py"}
    assert places.get(r"\bnp\.load\(|\bnumpy\.load\(") == {"genneg/checkpoint.py"}
    assert places.get(r"pickle\.Unpickler\b") == {"domains/motion/body.py"}


@pytest.mark.parametrize("bad", [
    "eval(cfg['x'])", "exec(text)", "compile(src, 'f', 'exec')", "__import__(name)", "pickle.load(f)",
    "pickle.loads(b)", "marshal.loads(b)", "dill.load(f)", "torch.load(p)", "torch.load(p, weights_only=False)",
    "np.load(p)", "np.load(p, allow_pickle=True)", "numpy.load(p, mmap_mode='r')", "yaml.load(s)",
    "os.system(cmd)", "subprocess.run(cmd, shell=True)", "thing(x, allow_pickle=True)",
    "class U(pickle.Unpickler):\n    pass",
])
def test_the_scan_catches_each_forbidden_pattern(bad):
    assert forbidden_calls(bad), f"the scan missed {bad!r}"


@pytest.mark.parametrize("fine", [
    "torch.load(p, map_location='cpu', weights_only=True)", "np.load(p, allow_pickle=False)", "json.loads(s)",
    "re.compile('x')", "model.eval()", "spec.loader.exec_module(m)", "subprocess.run(['ls'], check=True)",
    "class U(pickle.Unpickler):\n    def find_class(self, m, n):\n        raise ValueError",
    "RestrictedUnpickler(f).load()", "'pickle.load(f) in a string'",
])
def test_the_scan_passes_safe_code(fine):
    assert not forbidden_calls(fine), f"false alarm on {fine!r}"

