"""Sampling memory is bounded by the batch size: samples stream to disk, and no array of all n rows is ever built."""

import os
import subprocess
import sys
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
import torch

from genneg.config import SamplerConfig
from genneg.generate import generate, sample_chunks, sample_to_disk
from genneg.streaming import ArrayWriter
from genneg.testing import GaussianMixtureDomain

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------------------------ ArrayWriter


@pytest.mark.parametrize("out", ["a.npz", "a_folder"])
def test_writer_assembles_rows_written_in_any_order(tmp_path, out):
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    flags = np.arange(10) % 3 == 0
    w = ArrayWriter(tmp_path / out, 10)
    for start in (8, 0, 4):  # out of order, uneven batches
        stop = {8: 10, 0: 4, 4: 8}[start]
        w.write(start, {"x": x[start:stop], "valid": flags[start:stop], "fps": np.array(20.0)})
    path = w.close()
    if out.endswith(".npz"):
        z = np.load(path)
        got = {k: z[k] for k in z.files}
    else:
        got = {p.stem: np.load(p, mmap_mode="r") for p in path.glob("*.npy")}
    assert np.array_equal(got["x"], x) and np.array_equal(got["valid"], flags) and float(got["fps"]) == 20.0
    assert not list(tmp_path.glob(".*partial")), "the partial folder was left behind"


def test_writer_refuses_bad_batches_and_leaves_nothing_on_failure(tmp_path):
    w = ArrayWriter(tmp_path / "s.npz", 4)
    w.write(0, {"x": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="does not match"):
        w.write(2, {"x": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="do not fit"):
        w.write(3, {"x": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="rows were written"):
        w.close()  # 2 of 4 rows: incomplete, so no result
    assert not (tmp_path / "s.npz").exists() and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="object arrays"):
        ArrayWriter(tmp_path / "o.npz", 2).write(0, {"x": np.array([None, None])})
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        ArrayWriter(tmp_path / "taken", 2)


# ------------------------------------------------------------------------------------------------------ streaming


class _Recorder:
    """Wraps the GMM domain's decode and denoiser to record the largest batch either ever sees."""

    def __init__(self, domain):
        self.domain, self.largest = domain, 0

    def denoiser(self, x, sigma, cond=None):
        self.largest = max(self.largest, x.shape[0])
        return self.domain.gmm.denoiser(x, sigma, cond)

    def __getattr__(self, name):
        return getattr(self.domain, name)

    def decode(self, x0, cond=None):
        self.largest = max(self.largest, x0.shape[0])
        return self.domain.decode(x0, cond)


def test_sample_to_disk_holds_one_batch_at_a_time(tmp_path):
    """200,000 samples in batches of 2,000: every array ever built is batch-sized (structural, not timed)."""
    n, batch = 200_000, 2_000
    domain = _Recorder(GaussianMixtureDomain())
    cfg = SamplerConfig(steps=2, batch_size=batch)
    sample_to_disk(domain.denoiser, domain, 2 * batch, cfg, tmp_path / "warm", oracle=domain.oracle())  # imports
    tracemalloc.start()  # numpy reports its allocations to tracemalloc
    try:
        out = sample_to_disk(domain.denoiser, domain, n, cfg, tmp_path / "s", oracle=domain.oracle(), seed=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full = n * 2 * 4  # the decoded samples alone, all rows at once (float32)
    assert domain.largest == batch
    assert peak < full / 8, f"peak traced allocation {peak} bytes; all samples would be {full}"
    x = np.load(tmp_path / "s" / "samples.npy", mmap_mode="r")
    valid = np.load(tmp_path / "s" / "valid.npy")
    assert x.shape == (n, 2) and valid.shape == (n,) and out["n"] == n
    assert out["invalid"] == int((~valid).sum()) and out["path"] == str(tmp_path / "s")


def test_streamed_batches_do_not_depend_on_how_they_are_consumed():
    """Batch i draws from its own seed: the rows are the same whether batches are streamed or split over ranks."""
    domain = GaussianMixtureDomain()
    cfg = SamplerConfig(steps=3, batch_size=32)
    a = torch.cat([x for _, _, x, _ in sample_chunks(domain.gmm.denoiser, domain, 100, cfg, seed=1)])
    b = torch.cat([x for _, _, x, _ in sample_chunks(domain.gmm.denoiser, domain, 64, cfg, seed=1)])
    assert a.shape == (100, 2) and torch.equal(a[:64], b)
    c = torch.cat([x for _, _, x, _ in sample_chunks(domain.gmm.denoiser, domain, 100, replace(cfg, batch_size=50),
                                                   seed=1)])
    assert not torch.equal(a, c)  # the draw depends on the batch size, as documented


def test_generate_still_draws_one_sequential_stream():
    """In a single process ``generate`` keeps its reproducible draw (batch size does not change the first rows'
    noise order within a batch)."""
    domain = GaussianMixtureDomain()
    cfg = SamplerConfig(steps=3, batch_size=16)
    x1 = generate(domain.gmm.denoiser, domain.sample_shape, 40, cfg, seed=5)
    x2 = generate(domain.gmm.denoiser, domain.sample_shape, 40, cfg, seed=5)
    assert torch.equal(x1, x2) and x1.shape == (40, 2)


def test_cli_sample_streams_with_a_batch_size(toy_run, tmp_path):
    run, base = toy_run, [sys.executable, "-m", "genneg"]
    p = subprocess.run([*base, "sample", "--run-dir", str(run), "--num-samples", "900", "--batch-size", "200",
                        "--out", str(tmp_path / "s"), "--quiet", "--device", "cpu"], env=ENV, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    assert "wrote 900 samples" in p.stdout
    z = {f.stem: np.load(f) for f in (tmp_path / "s").glob("*.npy")}
    assert z["samples"].shape == (900, 2) and {"valid", "defined", "reason_white_cell"} <= set(z)
    bad = subprocess.run([*base, "sample", "--run-dir", str(run), "--n", "10", "--batch-size", "0", "--out",
                          str(tmp_path / "t.npz"), "--device", "cpu"], env=ENV, capture_output=True, text=True)
    assert bad.returncode != 0 and "--batch-size must be >= 1" in bad.stderr + bad.stdout
