"""DeepMimic clips, retargeting onto SMPL-24, the 6D representation, windows, and the AMASS loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("smplx")
pytest.importorskip("pybullet")

from genneg.domains.motion.data import deepmimic as dm  # noqa: E402
from genneg.domains.motion.data.amass import Z_UP_TO_Y_UP, load_amass, to_smplx_inputs  # noqa: E402
from genneg.domains.motion.data.representation import (FRAME_FEATURES, canonicalize, decode, encode,  # noqa: E402
                                                       heading, mirror)
from genneg.domains.motion.data.windows import (WindowConfig, build_windows, cache_windows, load_windows,  # noqa: E402
                                                split_segments)
from genneg.domains.motion.rotations import axis_angle_to_matrix  # noqa: E402
from genneg.domains.motion.skeleton import joint_index, mirror_permutation  # noqa: E402


def _clip(name):
    return next(p for p in dm.default_clip_paths() if p.stem == f"humanoid3d_{name}")


def test_all_clips_read_with_unit_quaternions():
    clips = [dm.read_clip(p) for p in dm.default_clip_paths()]
    assert len(clips) == 15 and sum(c.duration for c in clips) > 30
    for c in clips:
        np.testing.assert_allclose(np.linalg.norm(c.local_quats, axis=-1), 1.0, atol=1e-9)
    kick = next(c for c in clips if c.name == "kick")
    raw = np.asarray(json.loads(_clip("kick").read_text())["Frames"])
    norms = [np.linalg.norm(raw[:, c : c + 4], axis=1) for c in (4, 8, 12, 16, 21, 25, 30, 35, 39)]
    assert np.ptp(np.concatenate(norms)) > 0.1  # the file really stores non-unit quaternions
    assert kick.local_quats.shape == (len(raw), 15, 4)


def test_forward_kinematics_matches_pybullet():
    import pybullet as pb
    import pybullet_data

    clip = dm.read_clip(_clip("dance_a"))
    _, pos = dm.forward_kinematics(clip.local_quats, clip.root_pos)
    cid = pb.connect(pb.DIRECT)
    try:
        pb.setAdditionalSearchPath(pybullet_data.getDataPath())
        h = pb.loadURDF("humanoid/humanoid.urdf", globalScaling=0.25, flags=pb.URDF_MAINTAIN_LINK_ORDER,
                        physicsClientId=cid)  # fmt: skip
        for f in (0, 40, 80):
            q = clip.local_quats[f]
            pb.resetBasePositionAndOrientation(h, clip.root_pos[f], [*q[0, 1:], q[0, 0]], physicsClientId=cid)
            for i in range(pb.getNumJoints(h, physicsClientId=cid)):
                info = pb.getJointInfo(h, i, physicsClientId=cid)
                j = dm.DM_JOINTS.index(info[1].decode())
                if info[2] == pb.JOINT_SPHERICAL:
                    pb.resetJointStateMultiDof(h, i, [*q[j, 1:], q[j, 0]], physicsClientId=cid)
                elif info[2] == pb.JOINT_REVOLUTE:
                    pb.resetJointState(h, i, 2 * np.arctan2(q[j, 3], q[j, 0]), physicsClientId=cid)
            for i in range(pb.getNumJoints(h, physicsClientId=cid)):
                link = pb.getLinkState(h, i, computeForwardKinematics=True, physicsClientId=cid)[4]
                j = dm.DM_JOINTS.index(pb.getJointInfo(h, i, physicsClientId=cid)[1].decode())
                np.testing.assert_allclose(link, pos[f, j], atol=1e-5)
    finally:
        pb.disconnect(cid)


@pytest.mark.parametrize("name", ["walk", "cartwheel"])
def test_smpl_bone_directions_match_deepmimic(body, name):
    clip = dm.resample(dm.read_clip(_clip(name)), 20.0)
    root, local = dm.retarget_to_smpl(clip, body.rest_joints.astype(float))
    from genneg.domains.motion.data.windows import pose_body

    joints = pose_body(body, root, local).joints
    _, p_dm = dm.forward_kinematics(clip.local_quats, clip.root_pos)
    p_dm = p_dm @ dm.AXIS_CHANGE.T
    checked = 0
    for smpl_joint, (child, bone) in dm.BONE_MATCH.items():
        if bone == "up":
            continue
        a = joints[:, joint_index(child)] - joints[:, joint_index(smpl_joint)]
        b = p_dm[:, dm.DM_JOINTS.index(bone[1])] - p_dm[:, dm.DM_JOINTS.index(bone[0])]
        cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 0.2, smpl_joint
        checked += 1
    assert checked == 13


def test_walk_is_grounded_without_penetration(walk):
    from genneg.oracles.motion import physdiff_metrics

    _, _, out = walk
    lowest = out.vertices[:, :, 1].min(1)
    m = physdiff_metrics(out.vertices[None], 20.0)
    assert m["penetrate_mm"][0] < 0.5 and lowest.min() > -0.005 and lowest.max() < 0.03


@pytest.mark.parametrize(
    "content, match",
    [('{"Loop": "wrap", "Frames": [[0.1', "invalid JSON"), ('{"Loop": "wrap"}', "'Frames' list"),
     ('{"Frames": [[0.1, 1, 2]]}', ">= 2 frames of 44"), ("[1, 2]", "'Frames' list")],
)  # fmt: skip
def test_malformed_clips_are_rejected(tmp_path, content, match):
    path = tmp_path / "humanoid3d_bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        dm.read_clip(path)


def test_clip_values_are_checked(tmp_path):
    frames = json.loads(_clip("walk").read_text())["Frames"]
    with pytest.raises(FileNotFoundError):
        dm.read_clip(tmp_path / "nope.txt")
    bad = [list(f) for f in frames]
    bad[3][5] = float("nan")
    (tmp_path / "nan.txt").write_text(json.dumps({"Frames": bad}))  # Python's json writes NaN
    with pytest.raises(ValueError, match="NaN"):
        dm.read_clip(tmp_path / "nan.txt")
    zero = [list(f) for f in frames]
    zero[2][8:12] = [0, 0, 0, 0]
    (tmp_path / "zero.txt").write_text(json.dumps({"Frames": zero}))
    with pytest.raises(ValueError, match="zero-length"):
        dm.read_clip(tmp_path / "zero.txt")


def test_representation_round_trip_canonical_and_mirror(walk):
    root, local, _ = walk
    r, loc = canonicalize(root, local)
    assert abs(r[0, 0]) < 1e-9 and abs(r[0, 2]) < 1e-9 and abs(heading(loc[0, 0])) < 1e-6
    np.testing.assert_allclose(r[:, 1], root[:, 1])
    dec = decode(encode(r, loc))
    np.testing.assert_allclose(dec["rotations"], loc, atol=1e-5)
    np.testing.assert_allclose(axis_angle_to_matrix(dec["global_orient"]), loc[:, 0], atol=1e-5)
    assert dec["body_pose"].shape == (len(r), 69)
    back = mirror(*mirror(r, loc))
    np.testing.assert_allclose(back[1], loc, atol=1e-12)
    with pytest.raises(ValueError, match="147"):
        decode(np.zeros((2, 5, 100)))
    with pytest.raises(ValueError, match="NaN"):
        decode(np.full((1, 2, FRAME_FEATURES), np.nan))


def test_mirrored_motion_is_the_mirror_image(body, walk):
    from genneg.domains.motion.data.windows import pose_body

    root, local, out = walk
    mirrored = pose_body(body, *mirror(root, local)).joints
    swap = mirror_permutation()
    np.testing.assert_allclose(mirrored[:, swap] * [-1, 1, 1], out.joints, atol=1e-4)


def test_windows_splits_cache_and_determinism(body, tmp_path):
    cfg = WindowConfig(clips=("walk", "kick"), seed=3)
    data = build_windows(cfg, body)
    n = len(data["label"])
    assert data["features"].shape == (n, 40, FRAME_FEATURES) and data["mask"].shape == (n, 40)
    assert set(data["split"]) == {"train", "val", "test"} and list(data["label_names"]) == ["kick", "walk"]
    assert (data["mask"].sum(1) == data["length"]).all() and not data["features"][~data["mask"]].any()
    assert data["cycles"].tolist()[0] == 0 and data["cycles"].tolist()[1] > 1  # kick does not loop, walk does
    for c, clip in enumerate(data["label_names"]):  # held-out frames never appear in train windows
        seg = split_segments(int(data["frames"][c]), cfg, tiled=bool(data["cycles"][c]))
        k = data["clip"] == clip
        ends = data["start"][k] + data["length"][k]
        for split, (a, b) in seg.items():
            sel = data["split"][k] == split
            assert sel.any() and (data["start"][k][sel] >= a).all() and (ends[sel] <= b).all()
    walk = (data["clip"] == "walk") & (data["split"] != "train")
    assert (data["length"][walk] == 40).all() and walk.sum() >= 8  # the tiled clip holds out full windows
    train = data["split"] == "train"
    assert (data["length"][train] < 40).any() and (data["length"][train] == 40).any()  # random prefixes
    path = cache_windows(cfg, body, tmp_path)
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["body"] == "proxy-smpl" and manifest["windows"]["train"] == (data["split"] == "train").sum()
    assert set(manifest["tiled"]) == {"walk"}
    val = load_windows(path, "val")
    np.testing.assert_array_equal(val["features"], data["features"][data["split"] == "val"])
    assert cache_windows(cfg, body, tmp_path) == path
    with pytest.raises(ValueError, match="split must be one of"):
        load_windows(path, "dev")
    with pytest.raises(ValueError, match="unknown clips"):
        build_windows(WindowConfig(clips=("moonwalk",)), body)
    with pytest.raises(ValueError, match="min_frames"):
        WindowConfig(min_frames=1)
    with pytest.raises(ValueError, match="heldout_frames"):
        WindowConfig(heldout_frames=20)


def test_tiled_loops_join_continuously_and_repeat_the_cycle():
    from genneg.domains.motion.data.loops import close_loop, join_ratio, tile

    for name in ("walk", "spin", "crawl"):
        clip = dm.read_clip(_clip(name))
        closed, fix = close_loop(clip)
        assert join_ratio(closed) <= 1.0 + 1e-6, name  # no joint moves faster across a join than within the cycle
        assert fix < 60
        three = tile(closed, 3)
        n = len(clip.times)
        assert len(three.times) == 3 * n - 2 and np.all(np.diff(three.times) > 0)
        _, p1 = dm.forward_kinematics(three.local_quats[1:n], three.root_pos[1:n])
        _, p3 = dm.forward_kinematics(three.local_quats[2 * n - 1 :], three.root_pos[2 * n - 1 :])
        rel = lambda p: p - p[:, :1] * [1, 0, 1]  # noqa: E731  (a cycle is the first moved and turned)
        np.testing.assert_allclose(np.linalg.norm(np.diff(rel(p1), axis=1), axis=-1),
                                   np.linalg.norm(np.diff(rel(p3), axis=1), axis=-1), atol=1e-9)  # fmt: skip
    crawl = dm.read_clip(_clip("crawl"))
    assert join_ratio(crawl) > 2  # the raw mocap does not close: its join is a jump
    with pytest.raises(ValueError, match="not marked as looping"):
        tile(dm.read_clip(_clip("kick")), 2)


def test_amass_loader_on_a_written_file(tmp_path, body):
    n, fps = 31, 60.0
    t = np.arange(n) / fps
    poses = np.zeros((n, 156))
    poses[:, 3 * joint_index("left_knee")] = np.linspace(0, 1.0, n)  # knee flexes over 0.5 s
    trans = np.stack([t, np.zeros(n), 0.9 + 0 * t], -1)  # walks along +x, pelvis 0.9 m up (Z up)
    np.savez(tmp_path / "seq_poses.npz", poses=poses, trans=trans, betas=np.zeros(16), mocap_framerate=fps,
             gender="female")  # fmt: skip
    m = load_amass(tmp_path / "seq_poses.npz", fps=20.0, pelvis_rest=np.array([0.0, 0.0, 0.1]))
    assert m.local.shape == (11, 24, 3, 3) and m.fps == 20.0 and m.gender == "female"
    np.testing.assert_allclose(m.root[:, 1], 1.0)  # Z up -> Y up: (trans + pelvis) z becomes y
    np.testing.assert_allclose(m.root[:, 0], np.arange(11) / 20.0, atol=1e-9)
    np.testing.assert_allclose(m.local[:, 0], np.broadcast_to(Z_UP_TO_Y_UP, (11, 3, 3)), atol=1e-9)
    angle = np.arccos(np.clip((np.trace(m.local[:, joint_index("left_knee")], axis1=1, axis2=2) - 1) / 2, -1, 1))
    np.testing.assert_allclose(angle, np.linspace(0, 1.0, 11), atol=1e-6)
    np.testing.assert_allclose(m.local[:, joint_index("left_hand")], np.broadcast_to(np.eye(3), (11, 3, 3)))
    posed = body.forward(**to_smplx_inputs(m, body.rest_joints[0]))
    np.testing.assert_allclose(posed.joints[:, joint_index("pelvis")], m.root, atol=1e-5)
    knee, ankle = joint_index("left_knee"), joint_index("left_ankle")
    rest_shin = body.rest_joints[ankle] - body.rest_joints[knee]
    expected = m.local[-1, 0] @ m.local[-1, joint_index("left_hip")] @ m.local[-1, knee] @ rest_shin
    np.testing.assert_allclose(posed.joints[-1, ankle] - posed.joints[-1, knee], expected, atol=1e-5)
    np.savez(tmp_path / "bad.npz", poses=np.zeros((5, 10)), trans=np.zeros((5, 3)), mocap_framerate=30.0)
    with pytest.raises(ValueError, match=r"poses must be \[N, 72 \| 156 \| 165\]"):
        load_amass(tmp_path / "bad.npz")
    np.savez(tmp_path / "nan.npz", poses=np.full((5, 72), np.nan), trans=np.zeros((5, 3)), mocap_framerate=30.0)
    with pytest.raises(ValueError, match="NaN"):
        load_amass(tmp_path / "nan.npz")
    np.savez(tmp_path / "lack.npz", poses=np.zeros((5, 72)))
    with pytest.raises(ValueError, match="lacks"):
        load_amass(tmp_path / "lack.npz")
