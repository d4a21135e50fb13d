"""Writes the notebooks of this folder from the cells below (outputs empty, as they are committed).

Edit the cells here and run ``python notebooks/build_notebooks.py``; tests/notebooks/ checks that the committed
notebooks match this script, carry no outputs and run end to end with ``GENNEG_NOTEBOOK_FAST=1``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

FAST_FLAG = '''FAST = os.environ.get("GENNEG_NOTEBOOK_FAST") == "1"  # set by the test suite: tiny settings'''

# --------------------------------------------------------------------------------------------------- 01 toy

TOY = [
    ("md", """# 01 · Gen-neG step by step on the toy domain

A diffusion model learns points on the black cells of a 4×4 checkerboard. It still puts some samples on white
cells or off the board. The *oracle* (`oracles/toy.py`) says which samples are valid, but it is not
differentiable. Gen-neG turns its verdicts into noisy classifiers, guides the model away from what it rejects,
and distils the guided model back into one network. This notebook runs each stage by hand with the library
functions that `genneg run` calls, and draws each one.

Default settings (the `demo` preset): 7.5 minutes measured on a busy 2-core CPU machine, less on an idle one. The
test suite sets `GENNEG_NOTEBOOK_FAST=1`, which switches to the `tiny` preset and runs in seconds; its pictures are
rougher."""),
    ("code", f"""import os
import tempfile
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch

from genneg.domain import get_domain
from genneg.evaluate import format_infractions
from genneg.genneg import RunContext, distil, draw_labelled, run_round, stack
from genneg.models import fit_base

{FAST_FLAG}
cfg = get_domain("toy").presets()["tiny" if FAST else "demo"]
if FAST:  # fewer steps still: the test only checks that every cell runs
    cfg = replace(cfg, base=replace(cfg.base, steps=150), classifier=replace(cfg.classifier, steps=100))
domain = get_domain("toy", **cfg.data)
oracle = domain.oracle()                      # valid = on a black cell; reasons: white_cell, outside
run_dir = tempfile.mkdtemp(prefix="genneg-01-")
N = 1000 if FAST else 10_000                  # samples per picture
print(f"preset {{cfg.preset}}: {{cfg.base.steps}} base steps, {{cfg.genneg.rounds}} rounds of "
      f"{{cfg.genneg.samples_per_round}} samples, {{cfg.distil.steps}} distillation steps")"""),
    ("md", """Helpers: draw `N` samples from any denoiser (same seed, so stages are comparable) and label them
(`genneg.evaluate.format_infractions` prints each rate with its 95 % Wilson interval, per reason); \
plot a row of stages with the domain's own plot (valid
blue, invalid red, the valid cells grey)."""),
    ("code", """def draw(denoiser):
    x0, cond, result = draw_labelled(denoiser, domain, cfg, oracle, N, split="test", seed=1)
    return domain.decode(x0, cond), result


def show(panels):
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
    for ax, (title, points, result) in zip(np.atleast_1d(axes), panels):
        domain.plot(points, None, result, ax, title)
    plt.show()


stages = {}  # stage name -> (points, oracle result)"""),
    ("md", "## 1. The data: every training point is valid"),
    ("code", """data = domain.points("train")[:N]
show([("training data", data, oracle(data))])"""),
    ("md", """## 2. The base model

`fit_base` trains an EDM-preconditioned denoiser on the data. Its samples are mostly valid, but some land on white
cells (`white_cell`) or off the board (`outside`): these are the infractions Gen-neG removes."""),
    ("code", """base = fit_base(domain, cfg, run_dir).eval().requires_grad_(False)
stages["base"] = draw(base)
show([("base model", *stages["base"])])
print(format_infractions(stages["base"][1], digits=2))"""),
    ("md", """## 3. Round 1: a noisy classifier of the oracle's verdicts

`run_round` samples from the current model, labels the samples with the oracle (α = the valid fraction), and
trains a classifier C(valid | x_σ) on the samples re-noised at random σ, with importance weights that restore
the model's prior α. Below: what it learned, at three noise levels. At small σ it sees the board; at large σ
it knows little, and guidance only uses it up to the σ where it beats the prior (its `informative_sigma_max`)."""),
    ("code", """r1 = run_round(base, domain, cfg, oracle, 1, RunContext(run_dir))
print(f"alpha = {r1.alpha:.3f} on {r1.num_samples} samples; "
      f"guides up to sigma = {r1.report['informative_sigma_max']:.2f}")"""),
    ("code", """axis = np.linspace(-2.5, 2.5, 120)
grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
x = domain.encode(grid)
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, sigma in zip(axes, (0.02, 0.1, 0.5)):
    with torch.no_grad():
        p = r1.classifier.log_prob(x, torch.full((len(x),), sigma)).exp().reshape(120, 120)
    im = ax.imshow(p, origin="lower", extent=(-2.5, 2.5, -2.5, 2.5), vmin=0, vmax=1, cmap="RdBu")
    ax.set_title(f"C(valid | x_σ), σ = {sigma}", fontsize=9)
fig.colorbar(im, ax=axes, shrink=0.8)
plt.show()"""),
    ("md", """## 4. Guided sampling, and round 2 on top of it

`stack(base, classifiers)` is the base denoiser plus σ²·∇ log C for every classifier so far. Round 2 samples
from the model guided by classifier 1, and learns what is still wrong."""),
    ("code", """classifiers = [r1.classifier] if r1.classifier is not None else []
stages["round 1"] = draw(stack(base, classifiers, cfg.genneg))
for k in range(2, cfg.genneg.rounds + 1):
    r = run_round(stack(base, classifiers, cfg.genneg), domain, cfg, oracle, k, RunContext(run_dir))
    classifiers += [r.classifier] if r.classifier is not None else []
    print(f"round {k}: alpha = {r.alpha:.3f}")
guided = stack(base, classifiers, cfg.genneg)
stages[f"round {cfg.genneg.rounds}"] = draw(guided)
show([(name, *stages[name]) for name in stages])"""),
    ("md", """## 5. Distillation: one network again

Every classifier adds a gradient evaluation to each sampler step. `distil` trains a copy of the base to match
the guided denoiser on the guided model's own samples, so sampling costs one network evaluation again."""),
    ("code", """student = distil(guided, base, domain, cfg, RunContext(run_dir))
stages["distilled"] = draw(student)
show([(name, *stages[name]) for name in stages])"""),
    ("md", "## 6. Infraction rates per stage (on the same test draws)"),
    ("code", """for name, (_, result) in stages.items():
    print(f"{name:>10}: {format_infractions(result, digits=2)}")"""),
    ("md", """`genneg run toy --preset demo` runs these stages plus the baselines and ablations, on more samples and
with the NLL bound of every stage, and writes `report.md`; see `docs/toy.md`."""),
]

# --------------------------------------------------------------------------------------------------- 02 traffic

TRAFFIC = [
    ("md", """# 02 · Traffic scenes on a held-out road network

A sample is one scene: up to N vehicles (oriented boxes) around a centre vehicle, generated on a crop of a road
map. The oracle flags collisions (overlapping boxes) and off-road vehicles (a corner more than 0.3 m off the
drivable area). The data are SUMO simulations on generated and real networks; every split has its own networks,
so test scenes are on roads the model never saw.

This notebook generates scenes on the test networks, counts infractions before and after Gen-neG's guidance,
exports the scenes as JSON and hands them to SUMO, which places the vehicles and simulates a few seconds.

Default settings (the `demo` preset): 2 minutes to generate the data once (cached), then 14 minutes measured on
a busy 2-core CPU machine. `GENNEG_NOTEBOOK_FAST=1` (set by the test suite) uses the `tiny` preset: rough
pictures, numbers that mean little. Needs the `traffic` extra (`pip install -e ".[traffic]"`)."""),
    ("code", f"""import json
import os
import tempfile
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np

from genneg.batch import take
from genneg.domain import get_domain
from genneg.evaluate import format_infractions
from genneg.genneg import RunContext, draw_labelled, run_round, stack
from genneg.models import fit_base

{FAST_FLAG}
cfg = get_domain("traffic").presets()["tiny" if FAST else "demo"]
if FAST:  # fewer steps, one round: the test only checks that every cell runs
    cfg = replace(cfg, base=replace(cfg.base, steps=150), genneg=replace(cfg.genneg, rounds=1))
domain = get_domain("traffic", **cfg.data)
run_dir = tempfile.mkdtemp(prefix="genneg-02-")
N = 64 if FAST else 1000                      # test scenes generated per stage
print(f"preset {{cfg.preset}}: {{domain.max_vehicles}} vehicle slots, {{cfg.base.steps}} base steps")"""),
    ("md", """## 1. The data: SUMO scenes, split by network

`prepare_data` runs SUMO once per network and caches the scenes (in `$GENNEG_CACHE`, default
`~/.cache/genneg`). The test split's networks are held out from training."""),
    ("code", """domain.prepare_data()
oracle = domain.oracle()                      # collision + offroad, each scene on its own map
table = domain.table
for split in ("train", "val", "test"):
    ids = table.ids(split)
    print(f"{split:>5}: {len(ids):5d} scenes on {sorted(set(table.network[ids]))}")"""),
    ("code", """def show(panels, indices):
    fig, axes = plt.subplots(len(panels), len(indices), figsize=(3.1 * len(indices), 3.7 * len(panels)), squeeze=False)
    for row, (title, samples, result) in zip(axes, panels):
        for ax, i in zip(row, indices):
            domain.plot(samples, None, result, ax, title=f"{title}, scene {i}", index=i)
    plt.tight_layout()
    plt.show()


x0, cond = domain.dataset("train")
pick = np.arange(3)
data = domain.decode(x0[pick], take(cond, pick))
show([("training data", data, oracle(data))], range(3))"""),
    ("md", """## 2. Base model on the held-out networks

Infracting vehicles are drawn red. Every stage below samples the same test conditions (maps, vehicle slots)
with the same initial noise, so scene *i* of one stage is comparable with scene *i* of another."""),
    ("code", """def draw(denoiser):
    x0, cond, result = draw_labelled(denoiser, domain, cfg, oracle, N, split="test", seed=1)
    return domain.decode(x0, cond), result


base = fit_base(domain, cfg, run_dir).eval().requires_grad_(False)
before = draw(base)
print("base:", format_infractions(before[1]))"""),
    ("md", """## 3. Gen-neG: rounds of oracle-trained classifiers, stacked as guidance

Each round samples the current model on *training* maps, labels the scenes with the oracle and trains a
scene-transformer classifier of P(valid | noisy scene, map); the guided model adds the gradient of every
classifier's log-probability to the denoiser."""),
    ("code", """classifiers = []
for k in range(1, cfg.genneg.rounds + 1):
    r = run_round(stack(base, classifiers, cfg.genneg), domain, cfg, oracle, k, RunContext(run_dir))
    classifiers += [r.classifier] if r.classifier is not None else []
    print(f"round {k}: alpha = {r.alpha:.3f} on {r.num_samples} scenes {r.skipped}")
guided = stack(base, classifiers, cfg.genneg)
after = draw(guided)
print("base:   ", format_infractions(before[1]))
print("Gen-neG:", format_infractions(after[1]))"""),
    ("md", """Measured in the default setting (1000 test scenes, one seed, on a busy 2-core machine): the base model is
invalid in 85.5 % of the scenes (collision 52.9 %, off-road 61.9 %); after two rounds 92.4 % (collision 29.5 %,
off-road 86.8 %). Guidance pulls the vehicles apart, which removes many collisions, but pushes more of them off
the road, so the overall rate does not go down with this preset; its base is trained for minutes and breaks a
rule in most scenes (α ≈ 0.17). Notebook 04 guides against one simpler rule, with a clear gain. Below: scenes
the base model got wrong, before (top) and after guidance (bottom), on the same map and noise."""),
    ("code", """wrong = np.flatnonzero(~before[1].valid)[:4]
show([("base", *before), ("Gen-neG", *after)], wrong if len(wrong) else range(3))"""),
    ("md", """## 4. Export, and the SUMO hand-off

`scenes_to_dict` writes each scene in its own frame and in the world frame of its network, with per-vehicle
infraction flags. `simulate_scene` places the vehicles on the SUMO network (libsumo, in a child process),
simulates a few seconds and reports what SUMO saw: vehicles it could not place, collisions, teleports."""),
    ("code", """from genneg.domains.traffic.export import scenes_to_dict, write_scenes_json
from genneg.domains.traffic.handoff import simulate_scene

show_ids = np.asarray(wrong[: 1 if FAST else 3] if len(wrong) else [0])
subset = {k: np.asarray(v)[show_ids] for k, v in after[0].items()}
record = scenes_to_dict(subset, table, oracle.per_vehicle(subset))
path = write_scenes_json(os.path.join(run_dir, "scenes.json"), record)
print(path, json.dumps(record["scenes"][0]["vehicles"][0], indent=1))"""),
    ("code", """seconds = 2.0 if FAST else 10.0
for scene in record["scenes"]:
    world = [[v["world"][f] for f in record["fields"]] for v in scene["vehicles"]]
    out = simulate_scene(scene["network_file"], world, seconds=seconds)
    print(f"scene {scene['scene']} on {scene['network']}: placed {len(out['placed'])}/{len(world)}, "
          f"collisions {len(out['collisions'])}, teleports {len(out['teleports'])}, "
          f"still driving after {seconds:.0f} s: {len(out['remaining'])}")"""),
    ("md", """`genneg run traffic --preset demo` runs the whole method with distillation, baselines and a report; see
`docs/traffic.md`."""),
]

# --------------------------------------------------------------------------------------------------- 03 motion

MOTION = [
    ("md", """# 03 · Human motion: floor penetration, skating and floating, before and after Gen-neG

A sample is a 2-second window of a body's motion (20 fps): root position and 24 joint rotations, posed on an
SMPL body (a proxy body with SMPL's skeleton unless `GENNEG_SMPL_MODEL` points to the real model). The
training data are DeepMimic motion-capture clips. The physics oracle (`oracles/motion.py`) rejects a motion
whose body sinks into the floor (`penetration`), whose feet slide while in contact (`skating`) or that floats
above the floor (`float`).

Default settings: the `demo` preset, sized for a 2-core CPU (`docs/motion.md`, Presets). `GENNEG_NOTEBOOK_FAST=1`
(set by the test suite) uses the `tiny` preset, fewer steps and short GIFs. Needs the `motion` extra."""),
    ("code", f"""import os
import tempfile
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from genneg.batch import take
from genneg.domain import get_domain
from genneg.evaluate import format_infractions
from genneg.genneg import RunContext, draw_labelled, run_round, stack
from genneg.models import fit_base

{FAST_FLAG}
cfg = get_domain("motion").presets()["tiny" if FAST else "demo"]
if FAST:  # fewer steps and samples still: the test only checks that every cell runs
    cfg = replace(cfg, base=replace(cfg.base, steps=100), genneg=replace(cfg.genneg, rounds=1, samples_per_round=64))
domain = get_domain("motion", **cfg.data)
oracle = domain.oracle()                      # reasons: penetration, skating, float
run_dir = tempfile.mkdtemp(prefix="genneg-03-")
N = 32 if FAST else 384                       # test windows generated per stage
print(f"preset {{cfg.preset}}: {{cfg.base.steps}} base steps, {{cfg.genneg.rounds}} rounds")"""),
    ("md", """## 1. The data

Each clip is split in time into train / val / test segments, cut into windows and mirrored. Below: the height
of the lowest mesh vertex over time for real test windows (the floor is 0; dashed: the oracle's penetration
tolerance; dotted: its float tolerance)."""),
    ("code", """domain.prepare_data()
print("clips:", ", ".join(domain.label_names))
x0, cond = domain.dataset("test")
pick = np.arange(min(40, len(x0)))
real = domain.decode(x0[pick], take(cond, pick))
fig, ax = plt.subplots(figsize=(5, 3.4))
domain.plot(real, None, oracle(real), ax, "real test windows")
plt.show()"""),
    ("md", "## 2. Base model, then Gen-neG rounds"),
    ("code", """def draw(denoiser):
    x0, cond, result = draw_labelled(denoiser, domain, cfg, oracle, N, split="test", seed=1)
    return domain.decode(x0, cond), result


base = fit_base(domain, cfg, run_dir).eval().requires_grad_(False)
before = draw(base)
print("base:", format_infractions(before[1]))"""),
    ("code", """classifiers = []
for k in range(1, cfg.genneg.rounds + 1):
    r = run_round(stack(base, classifiers, cfg.genneg), domain, cfg, oracle, k, RunContext(run_dir))
    classifiers += [r.classifier] if r.classifier is not None else []
    state = r.skipped or ("collapsed: guides nothing" if r.report.get("collapsed") else "informative")
    print(f"round {k}: alpha = {r.alpha:.3f} on {r.num_samples} windows; classifier {state}")
after = draw(stack(base, classifiers, cfg.genneg))
print("base:   ", format_infractions(before[1]))
print("Gen-neG:", format_infractions(after[1]))
for name, (samples, result) in (("base", before), ("Gen-neG", after)):  # PhysDiff mm, GMD ratio, diversity, ...
    measures = domain.metrics(samples, None, result, "test")
    print(f"{name:8s}", ", ".join(f"{k} {v['value']:.3g}" for k, v in measures.items()))
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
domain.plot(before[0], None, before[1], axes[0], "base")
domain.plot(after[0], None, after[1], axes[1], "Gen-neG")
plt.show()"""),
    ("md", """The two lines above are this notebook's own measurement, on its preset, seed and machine; nothing else
is claimed here. The rates of longer-trained bases (the `cpu` preset), the real windows' rates and margins and
the grounding reference are in `docs/motion.md`, each with the run and the machine that measured it. With a base
as short-trained as this one, α is small and the classifiers may collapse to the prior (the round lines say so):
guidance then changes nothing. `GenNegConfig.min_minority` (more samples when the valid class is rare) and
`oracle_curriculum` (looser thresholds in early rounds) are the options for that case.

## 3. Before / after, animated

The same clip label and the same initial noise, sampled by the base model (left) and the guided model (right),
as stick figures of the SMPL joints over the floor. The skeleton and the frame's title turn red while the body
penetrates the floor; a toe turns red while it skates. `python -m genneg.domains.motion.export RUN_DIR --label walk`
writes such GIFs (plus AMASS `.npz` and meshes) from a finished `genneg run motion`."""),
    ("code", """from genneg.domains.motion.export import compare_gif

wrong = np.flatnonzero(~before[1].valid)
label = int(before[0]["label"][wrong[0] if len(wrong) else 0])  # a clip the base got wrong
path = os.path.join(run_dir, f"{domain.label_names[label]}.gif")
models = {"base": base, "Gen-neG": stack(base, classifiers, cfg.genneg)}
verdicts = compare_gif(path, domain, models, label, cfg.sampler, seed=1, frames=6 if FAST else None,
                       dpi=50 if FAST else 72)
print(domain.label_names[label], verdicts)
display(Image(filename=path))"""),
]

# --------------------------------------------------------------------------------------------------- 04 your own oracle

OWN = [
    ("md", """# 04 · Your own oracle: a new traffic rule, written, registered and guided away

A new rule is a plain function of decoded samples that returns True for valid samples. Here: a **keep-clear
zone** 5–20 m ahead of the centre vehicle, 6 m wide (think of a crossing that must stay free): no other
vehicle may stand in it. Register it with `register_oracle`, and Gen-neG learns a classifier of it from the model's
own samples and guides the model away from scenes that break it. No gradient of the rule is ever needed.

Default settings (the traffic `demo` preset, one round of guidance): 10 minutes measured on a busy 2-core CPU
machine, plus 2 minutes to generate the data the first time. Measured there: keep_clear infractions 44.1 % for
the base model, 24.6 % after guidance (1000 test scenes). `GENNEG_NOTEBOOK_FAST=1` (set by the test suite)
uses the `tiny` preset and only checks that everything runs: with a base trained for seconds, its numbers mean
little."""),
    ("code", f"""import os
import tempfile
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from genneg.domain import get_domain
from genneg.evaluate import format_infractions
from genneg.genneg import RunContext, draw_labelled, run_round, stack
from genneg.models import fit_base
from genneg.oracle import FunctionOracle, register_oracle

{FAST_FLAG}
cfg = get_domain("traffic").presets()["tiny" if FAST else "demo"]
if FAST:  # fewer steps still: the test only checks that every cell runs
    cfg = replace(cfg, base=replace(cfg.base, steps=150))
domain = get_domain("traffic", **cfg.data)
domain.prepare_data()                         # SUMO scenes, generated once and cached
run_dir = tempfile.mkdtemp(prefix="genneg-04-")
N = 64 if FAST else 1000                      # test scenes generated per stage"""),
    ("md", """## 1. The rule, as a plain function

Decoded traffic samples are a dict: `boxes` `[B, N, 5]` (x, y, yaw, length, width in metres and radians, in the
scene frame: the centre vehicle at the origin facing +x), `defined` `[B, N]` (False for padded slots) and
`scene` `[B]`. The function returns one flag per scene, True = valid."""),
    ("code", """ZONE_X, ZONE_Y = (5.0, 20.0), (-3.0, 3.0)  # metres, scene frame


def keep_clear(samples, cond=None):
    xy = np.asarray(samples["boxes"])[..., :2]
    inside = (xy[..., 0] > ZONE_X[0]) & (xy[..., 0] < ZONE_X[1]) & (xy[..., 1] > ZONE_Y[0]) & (xy[..., 1] < ZONE_Y[1])
    inside &= np.asarray(samples["defined"], bool)
    inside[:, 0] = False                      # slot 0 is the centre vehicle itself
    return ~inside.any(axis=1)"""),
    ("md", "Check it on two hand-built scenes, one with a car 12 m ahead and one with the car 30 m ahead:"),
    ("code", """car = [4.5, 1.8]
blocked = {"boxes": np.array([[[0, 0, 0, *car], [12, 0.5, 0, *car]]]), "defined": np.ones((1, 2), bool)}
clear = {"boxes": np.array([[[0, 0, 0, *car], [30, 0.5, 0, *car]]]), "defined": np.ones((1, 2), bool)}
assert keep_clear(blocked).tolist() == [False] and keep_clear(clear).tolist() == [True]"""),
    ("md", """## 2. Registered by name

`register_oracle` takes a factory of no arguments that returns an Oracle; `FunctionOracle` wraps the rule as one.
Under the name `traffic:keep_clear` the domain finds it by its short name and composes it with its own oracles,
exactly as `genneg run traffic --oracle scene,keep_clear` would (the CLI needs the rule importable: see
`docs/adding_an_oracle.md`). We guide against the new rule alone, and measure collision and off-road too, to see
what guidance costs elsewhere. `overwrite=True` lets the cell run again."""),
    ("code", """register_oracle("traffic:keep_clear", lambda: FunctionOracle("keep_clear", keep_clear), overwrite=True)
rule = domain.oracle(["keep_clear"])              # what Gen-neG guides away from
measure = domain.oracle(["scene", "keep_clear"])  # collision, offroad and keep_clear, for the numbers


def draw(denoiser):
    x0, cond, result = draw_labelled(denoiser, domain, cfg, measure, N, split="test", seed=1)
    return domain.decode(x0, cond), result


x0, cond = domain.dataset("train")
print("training data:", format_infractions(measure(domain.decode(x0, cond))))"""),
    ("md", """## 3. Base model, one classifier, guided model

The rule is broken by about half of the real scenes, so the base model breaks it often too. `run_round` draws
samples from the base, labels them with the new rule only and trains one noisy classifier; `stack` adds its
gradient to the denoiser. Both stages sample the same held-out test maps with the same noise."""),
    ("code", """base = fit_base(domain, cfg, run_dir).eval().requires_grad_(False)
before = draw(base)
r = run_round(base, domain, cfg, rule, 1, RunContext(run_dir))
print(f"alpha (keep_clear valid fraction of the base's training-map samples) = {r.alpha:.3f} {r.skipped}")
guided = stack(base, [r.classifier] if r.classifier is not None else [], cfg.genneg)
after = draw(guided)"""),
    ("code", """print("base:   ", format_infractions(before[1]))
print("guided: ", format_infractions(after[1]))
k0 = before[1].reasons["keep_clear"][before[1].defined].mean()
k1 = after[1].reasons["keep_clear"][after[1].defined].mean()
print(f"keep_clear infractions: {100 * k0:.1f} % -> {100 * k1:.1f} %")"""),
    ("md", """Scenes where the base model put a car in the zone (orange), before (top) and after guidance (bottom), on
the same map and noise. Red boxes collide or leave the road (the domain's own oracle)."""),
    ("code", """def zone(ax):
    ax.add_patch(Rectangle((ZONE_X[0], ZONE_Y[0]), ZONE_X[1] - ZONE_X[0], ZONE_Y[1] - ZONE_Y[0],
                           fc="orange", alpha=0.35, zorder=1))


picked = np.flatnonzero(before[1].reasons["keep_clear"])[:4]
picked = picked if len(picked) else np.arange(3)
fig, axes = plt.subplots(2, len(picked), figsize=(3.1 * len(picked), 6.6), squeeze=False)
for row, (title, (samples, result)) in zip(axes, [("base", before), ("guided", after)]):
    for ax, i in zip(row, picked):
        domain.plot(samples, None, result, ax, title=f"{title}, scene {i}", index=i)
        zone(ax)
        ax.set_title(f"{title}, scene {i}: " + ("zone blocked" if result.reasons["keep_clear"][i] else "zone clear"),
                     fontsize=9)
plt.tight_layout()
plt.show()"""),
    ("md", """To use the rule from the command line, put the function and a factory of its Oracle in an importable
module and declare the factory in your package's `pyproject.toml` under `[project.entry-points."genneg.oracles"]`;
then `genneg run traffic --oracle scene,keep_clear` trains, guides, distils and reports rates per rule.
`docs/adding_an_oracle.md` walks through it."""),
]


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=[new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells])
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, cell in enumerate(nb.cells):  # stable ids, so rebuilding an unchanged notebook changes nothing
        cell["id"] = f"cell-{i:02d}"
    return nb


NOTEBOOKS = {
    "01_toy_walkthrough.ipynb": TOY,
    "02_traffic_scenes.ipynb": TRAFFIC,
    "03_motion.ipynb": MOTION,
    "04_your_own_oracle.ipynb": OWN,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), HERE / name)


if __name__ == "__main__":
    main()
