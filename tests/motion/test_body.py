"""Proxy SMPL body through smplx, SMPL model loading, and the restricted unpickler."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

pytest.importorskip("smplx")

from genneg.domains.motion.body import RestrictedUnpickler, UnsafePickleError, load_body, load_smpl_file  # noqa: E402
from genneg.domains.motion.proxy import KEYPOINT_NAMES, build_proxy_arrays  # noqa: E402
from genneg.domains.motion.skeleton import JOINT_NAMES, REST_JOINTS, joint_index  # noqa: E402


def test_proxy_is_named_and_cached(body, cache_dir):
    assert body.name == "proxy-smpl" and body.is_proxy
    files = list(cache_dir.glob("proxy-smpl-v*.npz"))
    assert len(files) == 1 and not list(cache_dir.glob("*.tmp"))
    mtime = files[0].stat().st_mtime_ns
    again = load_body("proxy", cache_dir=cache_dir)
    assert files[0].stat().st_mtime_ns == mtime and again.num_vertices == body.num_vertices


def test_forward_shapes_and_rest_joints(body):
    t = 7
    rng = np.random.default_rng(0)
    out = body.forward(rng.normal(0, 0.3, (t, 3)), rng.normal(0, 0.3, (t, 69)), rng.normal(0, 1, (t, 3)))
    assert out.vertices.shape == (t, body.num_vertices, 3) and out.vertices.dtype == np.float32
    assert out.joints.shape == (t, 24, 3) and out.body == "proxy-smpl"
    rest = body.forward(np.zeros((1, 3)), np.zeros((1, 69)), np.zeros((1, 3)))
    np.testing.assert_allclose(rest.joints[0], REST_JOINTS, atol=1e-5)


def test_j_regressor_reproduces_posed_joints(body):
    rng = np.random.default_rng(1)
    out = body.forward(rng.normal(0, 0.5, (5, 3)), rng.normal(0, 0.5, (5, 69)), rng.normal(0, 1, (5, 3)))
    regressed = np.einsum("jv,tvc->tjc", body.arrays["J_regressor"], out.vertices)
    np.testing.assert_allclose(regressed, out.joints, atol=1e-4)


def test_mesh_is_closed_and_skinning_is_normalised(body):
    a = build_proxy_arrays()
    np.testing.assert_allclose(a["weights"].sum(1), 1.0, atol=1e-6)
    assert (a["weights"] >= 0).all() and a["shapedirs"].shape[-1] == 300 and not a["posedirs"].any()
    mesh = body.mesh(body.forward(np.zeros((1, 3)), np.zeros((1, 69)), np.zeros((1, 3))).vertices[0])
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0.05
    assert mesh.metadata["name"] == "proxy-smpl"


def test_feet_keypoints_follow_the_feet(body):
    pose = np.zeros((1, 69))
    pose[0, 3 * (joint_index("left_knee") - 1)] = 1.2  # bend the left knee: left toes move back and up
    rest = body.forward(np.zeros((1, 3)), np.zeros((1, 69)), np.zeros((1, 3)))
    bent = body.forward(np.zeros((1, 3)), pose, np.zeros((1, 3)))
    assert set(KEYPOINT_NAMES) <= set(rest.keypoints)
    for side, key in (("left", "L"), ("right", "R")):
        toe, heel = rest.keypoints[f"{key}BigToe"][0], rest.keypoints[f"{key}Heel"][0]
        ankle = rest.joints[0, joint_index(f"{side}_ankle")]
        assert toe[2] > ankle[2] > heel[2]  # toes in front of the ankle, heel behind (+Z is forward)
        assert abs(toe[1] - rest.vertices[0, :, 1].min()) < 0.02  # on the sole
    assert bent.keypoints["LBigToe"][0][1] > rest.keypoints["LBigToe"][0][1] + 0.1
    np.testing.assert_allclose(bent.keypoints["RBigToe"], rest.keypoints["RBigToe"], atol=1e-6)


def test_bad_forward_inputs_are_rejected(body):
    z3, z69 = np.zeros((2, 3)), np.zeros((2, 69))
    with pytest.raises(ValueError, match="NaN"):
        body.forward(np.full((2, 3), np.nan), z69, z3)
    with pytest.raises(ValueError, match=r"body_pose must have shape \[T, 69\]"):
        body.forward(z3, np.zeros((2, 72)), z3)
    with pytest.raises(ValueError, match="frame counts differ"):
        body.forward(z3, np.zeros((3, 69)), z3)


def test_user_model_as_pickle_and_npz(tmp_path, body):
    a = build_proxy_arrays()
    arrays = {k: a[k] for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")}
    import scipy.sparse

    arrays["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])  # official files store it sparse
    arrays["shapedirs"] = arrays["shapedirs"][..., :10]
    pkl = tmp_path / "SMPL_NEUTRAL.pkl"
    pkl.write_bytes(pickle.dumps(arrays, protocol=2))
    user = load_body(pkl)
    assert user.name == "smpl:SMPL_NEUTRAL.pkl" and not user.is_proxy
    np.savez(tmp_path / "model.npz", **{k: np.asarray(v.toarray() if hasattr(v, "toarray") else v)
                                        for k, v in arrays.items()})  # fmt: skip
    os.environ["GENNEG_SMPL_MODEL"] = str(tmp_path / "model.npz")
    try:
        from_env = load_body()
    finally:
        del os.environ["GENNEG_SMPL_MODEL"]
    assert from_env.name == "smpl:model.npz"
    out = from_env.forward(np.zeros((2, 3)), np.zeros((2, 69)), np.zeros((2, 3)))
    np.testing.assert_allclose(out.joints[0], REST_JOINTS, atol=1e-5)
    assert load_body(tmp_path).name == "smpl:SMPL_NEUTRAL.pkl"  # a folder means <folder>/SMPL_NEUTRAL.pkl


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Exploit(marker)}))
    with pytest.raises(UnsafePickleError, match=r"refusing to load .*evil\.pkl.*(os|posix)\.system"):
        load_smpl_file(path)
    assert not marker.exists()
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        RestrictedUnpickler(io.BytesIO(b"cbuiltins\neval\n(S'1+1'\ntR.")).load()


def test_chumpy_file_gets_conversion_help(tmp_path):
    path = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    path.write_bytes(b"\x80\x02}q\x00X\x0a\x00\x00\x00v_templateq\x01cchumpy.ch\nCh\nq\x02)\x81q\x03}q\x04bs.")
    with pytest.raises(ValueError, match=r"(?s)chumpy objects.*np\.savez"):
        load_smpl_file(path)


def test_bad_model_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_smpl_file(tmp_path / "missing.pkl")
    (tmp_path / "trunc.pkl").write_bytes(pickle.dumps({"a": np.zeros(3)})[:20])
    with pytest.raises(ValueError, match="not a readable SMPL pickle"):
        load_smpl_file(tmp_path / "trunc.pkl")
    a = build_proxy_arrays()
    np.savez(tmp_path / "short.npz", **{k: a[k] for k in ("v_template", "f")})
    with pytest.raises(ValueError, match="lacks"):
        load_smpl_file(tmp_path / "short.npz")
    bad = dict(a, J_regressor=a["J_regressor"][:10])
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ValueError, match=r"J_regressor has shape \(10,"):
        load_smpl_file(tmp_path / "bad.npz")
    assert len(JOINT_NAMES) == 24
