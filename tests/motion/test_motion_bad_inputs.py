"""Bad inputs to the motion domain: AMASS files, DeepMimic clips, SMPL models and the body, motion windows, the
motion oracles and the missing ``genneg[motion]`` extra. Each must fail with the right error type and a message
that names the problem (and, for a file, the file). Table-driven like the engine's table
(``tests/reliability/test_bad_inputs.py``), with the shared helpers of ``tests/bad_inputs.py``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from bad_inputs import NAN, Bad, BadInputTable, file_cases, tiny_smpl, without

from genneg.domain import get_domain

MOTION_OK = np.zeros((1, 5, 4, 3))


def write_motion_files(r: Path) -> None:
    """AMASS files, DeepMimic clips, SMPL models and motion windows, each bad in one way (and the good twins)."""
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
    # motion windows
    (r / "windows_trunc.npz").write_bytes((r / "plain.npz").read_bytes()[:40])


def _body_forward(f, **kw):
    from genneg.domains.motion.body import Body

    args = {"global_orient": np.zeros((3, 3)), "body_pose": np.zeros((3, 69)), "transl": np.zeros((3, 3)), **kw}
    return Body(tiny_smpl(), "tiny").forward(**args)


def _motion_oracle(samples, cond=None):
    from genneg.oracles.motion import motion_oracle

    return motion_oracle()(samples, cond)


# ------------------------------------------------------------------------- lazy imports of the domain modules
def _load_amass(path, fps=20.0):
    from genneg.domains.motion.data.amass import load_amass

    return load_amass(path, fps=fps)


def _read_clip(path):
    from genneg.domains.motion.data.deepmimic import read_clip

    return read_clip(path)


def _clip_paths():
    from genneg.domains.motion.data.deepmimic import default_clip_paths

    return default_clip_paths()


def _load_smpl(path):
    from genneg.domains.motion.body import load_smpl_file

    return load_smpl_file(path)


def _load_windows(path, split=None):
    from genneg.domains.motion.data.windows import load_windows

    return load_windows(path, split)


def _motion_domain(**kw):
    from genneg.domains.motion import MotionDomain

    return MotionDomain(**kw)


def _thresholds(*args):
    from genneg.oracles.motion import MotionThresholds

    return MotionThresholds(*args)


# ---------------------------------------------------------------------------------------------------- the table
CASES: list[Bad] = [
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
            ("not a mapping", [1, 2], TypeError, r"mapping with 'lowest_height' \(or 'vertices'\)"),
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
    # --- missing optional extras: the error names the extra to install
    Bad("no smplx", without(["smplx"], lambda f: _body_forward(f)), ImportError, r"genneg\[motion\]"),
    Bad("no pybullet", without(["pybullet_data"], lambda f: _clip_paths()), ImportError, r"genneg\[motion\]"),
    Bad("no scipy for the motion domain",
        without(["scipy", "scipy.spatial", "scipy.spatial.transform"], lambda f: get_domain("motion"),
                fresh=("genneg.domains.motion", "genneg.oracles.motion")),
        ModuleNotFoundError, r"needs the module 'scipy.*genneg\[motion\]"),
]


# ---------------------------------------------------------------------------------------------------- the tests
class TestMotionBadInputs(BadInputTable):
    cases = CASES
    writers = (write_motion_files,)

    def test_valid_files_of_the_same_kinds_are_accepted(self, files):
        """The readers above refuse the bad files, not every file: the good twins load."""
        from genneg.domains.motion.body import load_smpl_file
        from genneg.domains.motion.data.amass import load_amass

        assert load_amass(files.path("amass_ok.npz")).root.shape[1] == 3
        assert load_smpl_file(files.path("smpl_ok.npz"))["v_template"].shape == (24, 3)
        assert load_smpl_file(files.path("smpl_ok.pkl"))["f"].shape == (1, 3)
