"""SMPL bodies through smplx: a user's model file, or the project's proxy body (the default).

The model comes from, in order: the ``model`` argument, the ``GENNEG_SMPL_MODEL`` environment variable, or the
proxy body (``proxy.py``), built once and cached. Pickles are read only from a path the user chose, through
:class:`RestrictedUnpickler`, which rebuilds numpy arrays and scipy.sparse matrices and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genneg.checkpoint import read_npz

from .proxy import PROXY_NAME, PROXY_VERSION, build_proxy_arrays
from .skeleton import NUM_JOINTS

__all__ = [
    "SMPL_MODEL_ENV",
    "UnsafePickleError",
    "RestrictedUnpickler",
    "load_smpl_file",
    "proxy_model_path",
    "BodyOutput",
    "Body",
    "load_body",
]

SMPL_MODEL_ENV = "GENNEG_SMPL_MODEL"
CACHE_ENV = "GENNEG_CACHE"
REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),  # protocol-2 pickles rebuild bytes this way
    # protocol 0/1 (Python 2's default) rebuild objects of the classes above as copyreg._reconstructor(cls, object,
    # state): it only calls object.__new__ on a class this unpickler resolved itself
    ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("__builtin__", "object"), ("builtins", "object"),
}  # fmt: skip
_SPARSE_CLASSES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}
_CHUMPY_HELP = (
    "{path} holds chumpy objects (the official SMPL release format), which genneg does not unpickle. Convert it "
    "once to plain numpy in an environment where chumpy imports (Python <= 3.10 with numpy < 1.24):\n"
    "    d = pickle.load(open(src, 'rb'), encoding='latin1')\n"
    "    d = {{k: (np.array(v) if 'chumpy' in type(v).__module__ else v) for k, v in d.items()}}\n"
    "    np.savez(dst, **{{k: d[k] for k in {keys}}})\n"
    "then point GENNEG_SMPL_MODEL (or model=) at the .npz."
)


class UnsafePickleError(pickle.UnpicklingError):
    """A model pickle asked for something other than numpy arrays or scipy.sparse matrices."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction and scipy.sparse matrix classes.

    Any other global (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafePickleError` before it can be
    called; chumpy objects raise a ``ValueError`` that explains how to convert the file.
    """

    def __init__(self, file, path: str = "<pickle>"):
        super().__init__(file, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            import scipy.sparse

            return getattr(scipy.sparse, name)
        if module.startswith("chumpy"):
            raise ValueError(_CHUMPY_HELP.format(path=self.path, keys=list(REQUIRED_KEYS)))
        raise UnsafePickleError(
            f"refusing to load {self.path}: it references {module}.{name}, and SMPL model pickles may hold only "
            "numpy arrays and scipy.sparse matrices (a pickle can run arbitrary code; is this file trustworthy?)"
        )


def _dense(value, key: str, path: str) -> np.ndarray:
    if hasattr(value, "toarray"):  # scipy.sparse J_regressor
        value = value.toarray()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ValueError(f"{path}: entry {key!r} is not a numeric array (got {type(value).__name__})")
    return arr


def load_smpl_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads an SMPL model (plain-numpy ``.pkl`` or ``.npz``) and checks its arrays.

    Returns:
        dict with at least ``v_template`` [V, 3], ``shapedirs`` [V, 3, S], ``posedirs`` [V, 3, 207],
        ``J_regressor`` [24, V] (dense), ``weights`` [V, 24], ``kintree_table`` [2, 24], ``f`` [F, 3].
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "SMPL_NEUTRAL.pkl"
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    if path.suffix == ".npz":
        raw = read_npz(path, "SMPL model")  # allow_pickle=False: model .npz files hold plain arrays only
    else:
        with open(path, "rb") as fh:
            try:
                raw = RestrictedUnpickler(fh, str(path)).load()
            except (EOFError, pickle.UnpicklingError) as e:
                if isinstance(e, UnsafePickleError):
                    raise
                raise ValueError(f"{path}: not a readable SMPL pickle ({type(e).__name__}: {e})") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: an SMPL pickle must hold a dict of arrays, got {type(raw).__name__}")
    return _check_model(raw, str(path))


def _check_model(raw: dict, path: str) -> dict[str, np.ndarray]:
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: SMPL model lacks {missing}; found keys {sorted(raw)}")
    out = {k: _dense(v, k, path) for k, v in raw.items() if k in REQUIRED_KEYS}
    out.update({k: np.asarray(raw[k]) for k in ("keypoint_names", "keypoint_vertices", "name") if k in raw})
    v = out["v_template"].shape[0]
    expected = {"v_template": (v, 3), "posedirs": (v, 3, (NUM_JOINTS - 1) * 9), "J_regressor": (NUM_JOINTS, v),
                "weights": (v, NUM_JOINTS), "kintree_table": (2, NUM_JOINTS)}  # fmt: skip
    for key, shape in expected.items():
        if out[key].shape != shape:
            raise ValueError(f"{path}: {key} has shape {out[key].shape}, expected {shape}")
    if out["shapedirs"].ndim != 3 or out["shapedirs"].shape[:2] != (v, 3):
        raise ValueError(f"{path}: shapedirs has shape {out['shapedirs'].shape}, expected ({v}, 3, S)")
    if out["f"].ndim != 2 or out["f"].shape[1] != 3 or out["f"].min() < 0 or out["f"].max() >= v:
        raise ValueError(f"{path}: faces 'f' must be [F, 3] vertex indices below {v}")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        if not np.isfinite(out[key]).all():
            raise ValueError(f"{path}: {key} contains NaN or infinite values")
    return out


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get(CACHE_ENV, "~/.cache/genneg")).expanduser()


def proxy_model_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of the cached proxy body ``.npz``, building it on first use (atomic write)."""
    path = _cache_dir(cache_dir) / f"{PROXY_NAME}-v{PROXY_VERSION}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(fh, **build_proxy_arrays())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path


@dataclass(frozen=True)
class BodyOutput:
    """A posed body for T frames.

    Attributes:
        vertices: [T, V, 3] float32, metres, Y up.
        joints: [T, 24, 3] float32, the SMPL joints (``skeleton.JOINT_NAMES`` order).
        keypoints: name -> [T, 3] smplx's extra vertex keypoints (feet, face, finger tips); empty if unknown.
        body: name of the body that made it ("proxy-smpl" for the proxy).
    """

    vertices: np.ndarray
    joints: np.ndarray
    keypoints: dict
    body: str

    def __post_init__(self):
        if self.vertices.ndim != 3 or self.joints.shape != (self.vertices.shape[0], NUM_JOINTS, 3):
            raise ValueError(f"inconsistent body output: vertices {self.vertices.shape}, joints {self.joints.shape}")


def _import_smplx():
    try:
        import smplx
        import torch
    except ImportError as e:
        raise ImportError(f"the motion domain needs smplx: pip install 'genneg[motion]' ({e})") from e
    return smplx, torch


def _frames(a, name: str, width: int) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"{name} must have shape [T, {width}], got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


class Body:
    """An SMPL body model run through ``smplx.SMPL`` (built lazily, CPU, float32).

    Attributes:
        name: "proxy-smpl" for the project's proxy body, else "smpl:<file name>"; shown in every output.
        is_proxy: True for the proxy body.
        faces: [F, 3] int64 triangle indices.
        rest_joints: [24, 3] joints of the template (``J_regressor @ v_template``).
        keypoint_names: names of smplx's extra keypoints returned in ``BodyOutput.keypoints``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], name: str, is_proxy: bool = False):
        self.arrays = arrays
        self.name = name
        self.is_proxy = is_proxy
        self.faces = arrays["f"].astype(np.int64)
        self.num_vertices = int(arrays["v_template"].shape[0])
        self.rest_joints = (arrays["J_regressor"].astype(np.float64) @ arrays["v_template"]).astype(np.float32)
        if "keypoint_names" in arrays:
            self.keypoint_names = tuple(str(k) for k in arrays["keypoint_names"])
            self._vertex_ids = dict(zip(self.keypoint_names, (int(i) for i in arrays["keypoint_vertices"])))
        elif self.num_vertices == 6890:  # the real SMPL topology: smplx's own vertex ids apply
            from smplx.vertex_ids import vertex_ids as smplx_vertex_ids

            self._vertex_ids = dict(smplx_vertex_ids["smplh"])
            self.keypoint_names = tuple(self._vertex_ids)
        else:  # unknown topology: smplx still needs face ids; we return no keypoints
            self._vertex_ids = {k: 0 for k in ("nose", "reye", "leye", "rear", "lear")}
            self.keypoint_names = ()
        self._model = None

    def __repr__(self):
        return f"Body({self.name!r}, vertices={self.num_vertices})"

    @property
    def model(self):
        """The ``smplx.SMPL`` module (created on first use)."""
        if self._model is None:
            smplx, _ = _import_smplx()
            full = len(self.keypoint_names) > 5
            with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for < 300 shape components
                self._model = smplx.SMPL(
                    model_path="",
                    data_struct=smplx.utils.Struct(**self.arrays),
                    vertex_ids=self._vertex_ids,
                    use_feet_keypoints=full,
                    use_hands=full,
                    num_betas=10,
                ).eval()
        return self._model

    @property
    def num_betas(self) -> int:
        return int(self.model.num_betas)

    def forward(self, global_orient, body_pose, transl, betas=None, *, batch_size: int = 2048) -> BodyOutput:
        """Poses the body for T frames, in batches of frames.

        Args:
            global_orient: [T, 3] axis-angle of the pelvis.
            body_pose: [T, 69] axis-angle of the 23 other joints (``JOINT_NAMES[1:]`` order).
            transl: [T, 3] translation added to every vertex (metres).
            betas: [num_betas] or [T, num_betas] shape coefficients; zeros if None.
        """
        _, torch = _import_smplx()
        go, bp, tr = _frames(global_orient, "global_orient", 3), _frames(body_pose, "body_pose", 69), None
        tr = _frames(transl, "transl", 3)
        t = go.shape[0]
        if bp.shape[0] != t or tr.shape[0] != t:
            raise ValueError(f"frame counts differ: global_orient {t}, body_pose {bp.shape[0]}, transl {tr.shape[0]}")
        nb = self.num_betas
        betas = np.zeros((t, nb), np.float32) if betas is None else np.asarray(betas, np.float32)
        betas = np.broadcast_to(betas, (t, nb)) if betas.shape == (nb,) else _frames(betas, "betas", nb)
        verts, joints = [], []
        with torch.no_grad():
            for s in range(0, t, batch_size):
                out = self.model(
                    global_orient=torch.from_numpy(go[s : s + batch_size]),
                    body_pose=torch.from_numpy(bp[s : s + batch_size]),
                    transl=torch.from_numpy(tr[s : s + batch_size]),
                    betas=torch.from_numpy(np.ascontiguousarray(betas[s : s + batch_size])),
                )
                verts.append(out.vertices.numpy())
                joints.append(out.joints.numpy())
        joints_all = np.concatenate(joints) if joints else np.zeros((0, NUM_JOINTS + len(self.keypoint_names), 3))
        keypoints = {k: joints_all[:, NUM_JOINTS + i] for i, k in enumerate(self.keypoint_names)}
        vertices = np.concatenate(verts) if verts else np.zeros((0, self.num_vertices, 3), np.float32)
        return BodyOutput(vertices, joints_all[:, :NUM_JOINTS], keypoints, self.name)

    def mesh(self, vertices: np.ndarray):
        """A ``trimesh.Trimesh`` of one frame's vertices [V, 3] (named after the body in its metadata)."""
        import trimesh

        vertices = np.asarray(vertices)
        if vertices.shape != (self.num_vertices, 3):
            raise ValueError(f"expected vertices of shape ({self.num_vertices}, 3), got {vertices.shape}")
        mesh = trimesh.Trimesh(vertices, self.faces, process=False)
        mesh.metadata["name"] = self.name
        return mesh


def load_body(model: str | os.PathLike | None = None, *, cache_dir: str | os.PathLike | None = None) -> Body:
    """The body to use: ``model`` (a path, or "proxy"), else ``$GENNEG_SMPL_MODEL``, else the cached proxy."""
    model = model if model is not None else os.environ.get(SMPL_MODEL_ENV) or "proxy"
    if str(model) == "proxy":
        return Body(load_smpl_file(proxy_model_path(cache_dir)), PROXY_NAME, is_proxy=True)
    path = Path(model).expanduser()
    path = path / "SMPL_NEUTRAL.pkl" if path.is_dir() else path  # smplx's folder convention
    return Body(load_smpl_file(path), f"smpl:{path.name}")
