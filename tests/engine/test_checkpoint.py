"""Checkpoints: bit-for-bit round trips, atomic writes, and untrusted files that must not execute."""

import os
import pickle

import pytest
import torch

from genneg.checkpoint import load_state, load_weights, read_json, save_state, save_weights, state_step, write_json


def test_weights_round_trip_bit_for_bit(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.LayerNorm(5))
    path = save_weights(tmp_path / "w.safetensors", net, {"width": 5, "note": "x"})
    state, cfg = load_weights(path)
    assert cfg == {"width": 5, "note": "x"}
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary file left behind


def test_state_round_trip(tmp_path):
    g = torch.Generator().manual_seed(3)
    state = {"step": 7, "rng": g.get_state(), "nested": {"a": torch.arange(4)}}
    back = load_state(save_state(tmp_path / "s.pt", state))
    assert (back["step"] == 7 and torch.equal(back["rng"], state["rng"])
            and torch.equal(back["nested"]["a"], torch.arange(4)))


def test_state_step_reads_the_step_of_a_state(tmp_path):
    """``state_step`` gives the step that ``load_state`` gives (a number or a 0-d tensor), from the memory-mapped
    file, and refuses what ``load_state`` refuses."""
    big = {"step": torch.tensor(1234), "ema": {"w": torch.randn(300, 300)}, "opt": {"exp_avg": torch.randn(300, 300)}}
    path = save_state(tmp_path / "big.pt", big)
    assert state_step(path) == int(load_state(path)["step"]) == 1234
    assert state_step(save_state(tmp_path / "int.pt", {"step": 7, "ema": {"w": torch.ones(3)}})) == 7
    mapped = load_state(path, mmap=True)
    assert torch.equal(mapped["opt"]["exp_avg"], big["opt"]["exp_avg"])  # mapped tensors read back bit for bit
    with pytest.raises(FileNotFoundError, match="no such train state"):
        state_step(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"\x00\x01 not a state")
    with pytest.raises(ValueError, match="refusing or unable"):
        state_step(tmp_path / "garbage.pt")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_does_not_execute(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"step": 1, "x": payload}, f)
    with pytest.raises(ValueError, match="refusing or unable"):
        load_state(path)
    with pytest.raises(ValueError, match="refusing or unable"):
        state_step(path)
    assert not marker.exists()


def test_truncated_files_get_clear_errors(tmp_path):
    path = save_weights(tmp_path / "w.safetensors", {"a": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated"):
        load_weights(path)
    j = write_json(tmp_path / "c.json", {"a": 1})
    j.write_text('{"a": ')
    with pytest.raises(ValueError, match="truncated"):
        read_json(j)
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.safetensors")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_json(tmp_path / "c.json", {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]
