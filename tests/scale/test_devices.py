"""Devices and the training loop's scale-out pieces: --device on every command, bf16 autocast, no device-to-host reads
in the sampling loop, and the per-rank state a DDP checkpoint holds (unit-tested without starting processes)."""

import math

import pytest
import torch
from torch import nn

from genneg import distributed
from genneg.cli import build_parser, main
from genneg.diffusion import karras_sigmas
from genneg.guidance import GuidanceTerm, guided
from genneg.sampling import sample_heun, sample_stochastic
from genneg.training import TrainConfig, _Loop, train

COMPUTE_COMMANDS = {
    "train": ["train", "toy", "--run-dir", "x"],
    "sample": ["sample", "--run-dir", "x", "--out", "y.npz"],
    "eval": ["eval", "--run-dir", "x"],
    "run": ["run", "toy"],
    "data": ["data", "toy"],
}


@pytest.mark.parametrize("command", sorted(COMPUTE_COMMANDS))
def test_every_command_takes_a_device(command):
    parser = build_parser()
    for device in ("cpu", "cuda", "auto"):
        assert parser.parse_args([*COMPUTE_COMMANDS[command], "--device", device]).device == device
    assert parser.parse_args(COMPUTE_COMMANDS[command]).device == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args([*COMPUTE_COMMANDS[command], "--device", "tpu"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no CUDA device is available"):
        main(["train", "toy", "--preset", "tiny", "--run-dir", str(tmp_path / "r"), "--device", "cuda"])


# ------------------------------------------------------------------------------------------------------ bf16


def _regression():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    return nn.Sequential(nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 1)), {"x": x, "y": x.sum(1, keepdim=True)}


def test_bf16_autocast_trains_with_fp32_weights():
    model, data = _regression()
    seen = []

    def loss_fn(net, batch, gen):
        out = net(batch["x"])
        seen.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return ((out.float() - batch["y"]) ** 2).mean(1)

    cfg = TrainConfig(steps=30, batch_size=32, lr=1e-2, warmup=1, precision="bf16", checkpoint_every=0)
    res = train(model, loss_fn, data, cfg)
    assert seen[0] == (True, torch.bfloat16), "the forward pass did not run under bf16 autocast"
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # weights and EMA stay fp32
    assert math.isfinite(res.last_loss)
    plain = []
    train(_regression()[0], lambda n, b, g: plain.append(n(b["x"]).dtype) or (n(b["x"]) - b["y"]).pow(2).mean(1),
          data, TrainConfig(steps=2, batch_size=32, warmup=1, checkpoint_every=0))
    assert plain[0] == torch.float32  # fp32 is the default: no autocast


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")


# ------------------------------------------------------------------------------------------------------ sampling loop

_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")


@pytest.fixture
def host_reads(monkeypatch):
    """Counts every Python-level read of a tensor's value to the host."""
    count = {"n": 0}
    for name in _READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            count["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return count


def _reads_for(host_reads, sampler, denoiser, steps: int) -> int:
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 80
    sigmas = karras_sigmas(steps, 0.002, 80.0)
    host_reads["n"] = 0
    sampler(denoiser, x, sigmas)
    return host_reads["n"]


@pytest.mark.parametrize("sampler", [sample_heun, sample_stochastic])
def test_the_sampling_loop_reads_nothing_back_per_step(host_reads, sampler):
    """The schedule is read once and non-finite outputs are noted on the device: the number of host reads does not
    grow with the number of steps (a per-step read would stall a GPU every step)."""
    denoiser = lambda x, s, c: x / (1 + s[:, None] ** 2)  # noqa: E731
    few, many = _reads_for(host_reads, sampler, denoiser, 4), _reads_for(host_reads, sampler, denoiser, 16)
    assert few == many and few <= 4


def test_guidance_reads_one_flag_vector_per_call(host_reads):
    calls = {"n": 0}

    def denoiser(x, s, c):
        calls["n"] += 1
        return x / (1 + s[:, None] ** 2)

    terms = [GuidanceTerm(lambda x, s, c: -(x**2).sum(1), sigma_range=(0, 1.0)),
             GuidanceTerm(lambda x, s, c: -x[:, 0], weight=0.5)]
    few = _reads_for(host_reads, sample_heun, guided(denoiser, terms), 4)
    calls_few = calls["n"]
    many = _reads_for(host_reads, sample_heun, guided(denoiser, terms), 16)
    assert many - few == calls["n"] - 2 * calls_few  # one read (all terms' flags together) per guided call


def test_a_non_finite_step_is_still_reported_with_its_sigma():
    def denoiser(x, s, c):
        return torch.where(s[:, None] < 1.0, torch.full_like(x, math.nan), x / (1 + s[:, None] ** 2))

    with pytest.raises(ValueError, match=r"sigma=0\.\d+ \(schedule index \d+\) contains non-finite"):
        sample_heun(denoiser, torch.randn(8, 2) * 80, karras_sigmas(8, 0.002, 80.0))


# ------------------------------------------------------------------------------------------------------ DDP state


def _loop(cfg=TrainConfig(steps=4, batch_size=8, checkpoint_every=0)):
    model = nn.Linear(2, 1)
    return _Loop(model, nn.Linear(2, 1), torch.optim.AdamW(model.parameters()), torch.Generator().manual_seed(0),
                 cfg, "m")


def test_each_rank_resumes_its_own_generator(monkeypatch):
    state = _loop().snapshot()
    streams = [torch.Generator().manual_seed(s).get_state() for s in (11, 12)]
    state.update(world_size=2, rank_rng=streams, rank_torch_rng=[torch.get_rng_state()] * 2)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    loop = _loop()
    loop.restore(state)
    assert torch.equal(loop.gen.get_state(), streams[1])


def test_resuming_with_another_number_of_processes_is_refused():
    state = _loop().snapshot()
    state.update(world_size=2, rank_rng=[state["rng"]] * 2, rank_torch_rng=[state["torch_rng"]] * 2)
    with pytest.raises(ValueError, match="written by 2 process"):
        _loop().restore(state)


def test_a_checkpoint_from_before_the_precision_option_still_resumes():
    state = _loop().snapshot()
    del state["cfg"]["precision"]  # written by an older genneg
    loop = _loop()
    loop.restore(state)
    with pytest.raises(ValueError, match="precision"):
        _loop(TrainConfig(steps=4, batch_size=8, checkpoint_every=0, precision="bf16")).restore(state)


def test_single_process_helpers_are_no_ops():
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.rank_seed(7) == 7 and list(distributed.shard_indices(3)) == [0, 1, 2]
    assert distributed.all_gather_objects("a") == ["a"] and distributed.gather_objects(1) == [1]
    t = torch.ones(2)
    assert distributed.all_reduce_sum(t) is t
    assert distributed.init("cpu") == "cpu"  # no WORLD_SIZE: nothing joined
