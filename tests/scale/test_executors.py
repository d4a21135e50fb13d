"""Labelling and data generation on any concurrent.futures.Executor: a local process pool, or a Dask cluster (here a
LocalCluster in this process), giving the same verdicts and data as running in this process."""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from genneg.distributed import executor, executor_width, labelling_oracle
from genneg.labelling import label
from genneg.oracles.toy import Checkerboard

distributed_pkg = pytest.importorskip("distributed", reason="the Dask path needs pip install 'genneg[dask]'")

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of 2 worker threads in this process, reachable over TCP (so a subprocess can join it too)."""
    with distributed_pkg.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                                      protocol="tcp", host="127.0.0.1") as c:
        yield c


def _points(n=5000):
    return np.random.default_rng(0).uniform(-2.5, 2.5, (n, 2))


def _same(a, b):
    return np.array_equal(a.valid, b.valid) and np.array_equal(a.defined, b.defined) and \
        all(np.array_equal(a.reasons[k], b.reasons[k]) for k in a.reasons)


def test_labelling_on_a_dask_cluster_matches_this_process(cluster):
    oracle, x = Checkerboard(), _points()
    with executor(dask_scheduler=cluster.scheduler_address) as ex:
        assert executor_width(ex) == 2
        parallel = labelling_oracle(oracle, ex)
        assert parallel.name == oracle.name
        assert _same(label(parallel, x), label(oracle, x))


def test_labelling_on_a_process_pool_matches_this_process():
    oracle, x = Checkerboard(), _points(3000)
    with executor(workers=2) as ex:
        assert executor_width(ex) == 2
        assert _same(label(labelling_oracle(oracle, ex), x), label(oracle, x))
    with executor(workers=1) as ex:
        assert ex is None and labelling_oracle(oracle, ex) is oracle  # the default: in this process


def test_an_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        with executor(dask_scheduler="tcp://127.0.0.1:9", connect_timeout=1):
            pass


def test_cli_sample_labels_on_the_dask_cluster(cluster, toy_run, tmp_path):
    args = [sys.executable, "-m", "genneg", "sample", "--run-dir", str(toy_run), "--num-samples", "600",
            "--batch-size", "200", "--quiet", "--device", "cpu"]
    p = subprocess.run([*args, "--out", str(tmp_path / "dask.npz"), "--dask-scheduler", cluster.scheduler_address],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    from genneg.generate import sample_to_disk
    from genneg.stages import load_stage

    cfg, domain, denoiser, _ = load_stage(toy_run, "base")
    sample_to_disk(denoiser, domain, 600, replace(cfg.sampler, batch_size=200), tmp_path / "here.npz",
                   oracle=domain.oracle())
    a, b = np.load(tmp_path / "dask.npz"), np.load(tmp_path / "here.npz")
    assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_motion_windows_built_on_the_dask_cluster_match(cluster, tmp_path):
    """The workers load the body once themselves (body_source) and retarget the clips; windows are identical."""
    pytest.importorskip("smplx")
    pytest.importorskip("pybullet")
    from genneg.domains.motion.body import load_body
    from genneg.domains.motion.data.windows import WindowConfig, build_windows

    body, cfg = load_body("proxy", cache_dir=tmp_path), WindowConfig(clips=("walk", "run"))
    here = build_windows(cfg, body)
    with executor(dask_scheduler=cluster.scheduler_address) as ex:
        there = build_windows(cfg, body, executor=ex, body_source=("proxy", str(tmp_path)))
    assert here.keys() == there.keys() and all(np.array_equal(here[k], there[k]) for k in here)


@pytest.mark.slow
def test_sumo_scenes_generated_on_a_dask_cluster(tmp_path):
    """libsumo holds one simulation per process: the cluster's workers are processes with one thread each."""
    pytest.importorskip("libsumo")
    from genneg.domains.traffic.data import generate_scenes, load_scenes, read_manifest, sumo_preset

    cfg = sumo_preset("tiny", warmup=20.0, snapshots=3, snapshot_every=5.0, centres_per_snapshot=3)
    with distributed_pkg.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                      worker_dashboard_address=None) as procs, \
            executor(dask_scheduler=procs.scheduler_address) as ex:
        folder = generate_scenes(tmp_path, cfg, executor=ex)
    manifest = read_manifest(folder)
    assert manifest["digest"] == cfg.digest() and len(manifest["networks"]) == 3
    for split in ("train", "val", "test"):
        scenes = load_scenes(folder, split)
        assert len(scenes["boxes"]) == manifest["scenes_per_split"][split] > 0
