"""``genneg demo traffic``: shipped traffic models side by side on held-out road networks, in minutes on a CPU.

``run_demo`` opens the traffic domain of the models' card for the test split only (simulating those networks' SUMO
data when they are missing; no training network is ever simulated), loads each model folder (the card against the
code, the weights' sha256 and the probe are checked; the training data's hash is not, since it needs the train
split), samples every model on the same test conditions from the same noise, judges the scenes with the oracle
(per-reason rates with 95 % Wilson intervals) and the domain's measures (``TrafficDomain.metrics``), hands the
first few scenes of each model to SUMO (``handoff.handoff_scenes``), draws them on their maps (rows: models,
columns: the same maps, infracting boxes red) and writes a report folder:

    report.md     the tables and the figure
    scenes.png    the figure grid
    demo.json     every number: per model the oracle summary, the domain measures, the SUMO summary, timings

The held-out data themselves (the conditions' own vehicles) get a row too: what the measures and SUMO say of real
scenes.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["run_demo", "open_models", "DemoModel", "DEFAULT_MODELS", "OPTIONAL_MODELS", "HEADLINE"]

DEFAULT_MODELS = ("pretrained/traffic-cpu",)
OPTIONAL_MODELS = ("pretrained/traffic-cpu-genneg",)  # used once shipped
SPLIT = "test"
DATA_LABEL = "held-out data"
# the domain measures shown in the report (demo.json keeps them all)
HEADLINE = {"invalid_per_vehicle": "invalid per vehicle %", "collision_per_vehicle": "collision per vehicle %",
            "offroad_per_vehicle": "off-road per vehicle %", "w1_ego_distance_m": "W1 distance from the ego (m)",
            "w1_gap_m": "W1 nearest-neighbour gap (m)", "w1_lane_offset_m": "W1 lane offset (m)"}


class DemoModel:
    """One model folder of the demo: its label (the folder's name), card, run config and (once loaded) denoiser."""

    def __init__(self, folder: Path, card: dict, cfg, label: str):
        self.folder, self.card, self.cfg, self.label = folder, card, cfg, label
        self.denoiser = None


def open_models(models: Sequence[str | Path], optional: Sequence[str | Path] = (), *,
                device: str = "cpu") -> tuple[list[DemoModel], list[str]]:
    """Reads the cards of ``models`` (each must exist) and of those ``optional`` folders that exist.

    Returns:
        (the models in order, the optional folders that are not there).

    Raises:
        FileNotFoundError: a folder of ``models`` does not exist or holds no card.
        ValueError: no model; a card of another domain than traffic; a model trained on other data than the first
            (their scenes would not be on the same maps); two folders of the same name.
    """
    from genneg.pretrained import CARD, card_config, read_card, resolve_folder

    if not models:
        raise ValueError("the traffic demo needs at least one model folder (e.g. pretrained/traffic-cpu)")
    found, absent = [Path(m) for m in models], []
    for m in optional:
        try:
            found.append(resolve_folder(m))
        except FileNotFoundError:
            absent.append(str(m))
    out, labels = [], {}
    for given in found:
        folder = resolve_folder(given)
        if not (folder / CARD).is_file():
            raise FileNotFoundError(f"{given} is no model folder: it holds no {CARD} (write one with `genneg "
                                    "export-model`)")
        card = read_card(folder)
        if card["domain"] != "traffic":
            raise ValueError(f"{given} holds a {card['domain']!r} model (its card's domain); the traffic demo takes "
                             "traffic model folders")
        if out and card["data"]["config"] != out[0].card["data"]["config"]:
            raise ValueError(f"{given} was trained on other data ({card['data']['config']}) than {out[0].folder} "
                             f"({out[0].card['data']['config']}); the demo compares models on the same maps")
        if folder.name in labels:
            raise ValueError(f"two model folders are named {folder.name!r} ({labels[folder.name]} and {given}); "
                             "rename one, the report labels rows by folder name")
        labels[folder.name] = given
        out.append(DemoModel(folder, card, replace(card_config(card), device=device), folder.name))
    return out, absent


def run_demo(models: Sequence[str | Path] = DEFAULT_MODELS, out: str | Path = "runs/demo-traffic", *,
             optional: Sequence[str | Path] = OPTIONAL_MODELS, num_samples: int = 256, handoff: int = 8,
             columns: int = 4, seconds: float = 10.0, seed: int = 0, workers: int = 2, device: str = "cpu",
             data_dir: str | Path | None = None, progress: Callable[[str], None] | None = print) -> Path:
    """Runs the demo and writes its report folder ``out``; returns the path of ``report.md``.

    Args:
        models: model folders (``genneg export-model``), each must exist; rows of the report in this order.
        optional: model folders used when they exist (the report names the absent ones).
        num_samples: scenes per model, on the same test conditions (drawn with replacement) and the same noise.
        handoff: scenes per model handed to SUMO (the first ones: the same maps for every model).
        columns: maps in the figure (the first scenes).
        seconds: simulated seconds of each SUMO hand-off.
        seed: the demo's streams: conditions ``("demo", "conditions")``, sampler noise ``("demo", "samples")``.
        workers: processes for the SUMO data (when missing) and the hand-offs.
        data_dir: the traffic cache root (default ``$GENNEG_CACHE/traffic``).
        progress: called with one line per step (None: silent).

    Raises:
        FileNotFoundError / ValueError: ``open_models``'s, and a bad count (naming it).
    """
    from genneg.domain import get_domain

    for name, v in (("num_samples", num_samples), ("workers", workers)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    for name, v in (("handoff", handoff), ("columns", columns)):
        if not 0 <= v <= num_samples:
            raise ValueError(f"{name} must be in [0, num_samples={num_samples}], got {v}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    say = progress or (lambda line: None)
    start = time.perf_counter()
    loaded, absent = open_models(models, optional, device=device)
    cfg = loaded[0].cfg
    domain = get_domain("traffic", **cfg.data, splits=(SPLIT,), **({"data_dir": data_dir} if data_dir else {}))
    timings = {"data": _prepare(domain, workers, say)}
    t0 = time.perf_counter()
    _load(loaded, domain, say)
    timings["load"] = time.perf_counter() - t0
    rows, timings["sampling"] = _sample_and_judge(loaded, domain, num_samples, seed, say)
    t0 = time.perf_counter()
    if handoff:
        say(f"handing the first {handoff} scenes of each row to SUMO ({seconds:g} simulated seconds each, "
            f"{workers} processes)")
        _handoff(domain, rows, handoff, seconds, workers)
    timings["handoff"] = time.perf_counter() - t0
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    _figure(domain, rows, columns, out / "scenes.png")
    timings["figure"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    record = _record(loaded, absent, rows, domain, cfg, num_samples, handoff, columns, seconds, seed, timings)
    from genneg.checkpoint import write_json

    write_json(out / "demo.json", record)
    (out / "report.md").write_text(markdown(record, "scenes.png" if columns else None))
    return out / "report.md"


# ------------------------------------------------------------------------------------------------- steps


def _prepare(domain, workers: int, say) -> float:
    """Makes the test split's SUMO data when missing (a line per network); returns the seconds it took."""
    t0 = time.perf_counter()
    if not domain.data_ready():
        from genneg.domains.traffic.data.sumo import plan_networks

        n = sum(s.split == SPLIT for s in plan_networks(domain.data_cfg))
        say(f"generating the SUMO scenes of the {n} held-out {SPLIT} networks (data preset "
            f"{domain.data_cfg.name!r}, {workers} processes; once, then cached under {domain.data_dir})")
        domain.prepare_data(workers=workers, progress=lambda line: say(f"  {line}"))
    say(f"loading the {SPLIT} scenes and their map crops")
    domain.table  # noqa: B018 - builds the scene table (and its crop cache) now, so sampling times are sampling
    return time.perf_counter() - t0


def _load(loaded: list[DemoModel], domain, say) -> None:
    from genneg.pretrained import load_pretrained

    for m in loaded:
        say(f"loading {m.folder} (card, weights' sha256, architecture and probe checked)")
        m.denoiser = load_pretrained(m.folder, domain, m.cfg, data=False)


def _sample_and_judge(loaded: list[DemoModel], domain, n: int, seed: int, say) -> tuple[list[dict], float]:
    """Every model's scenes on the same conditions and noise, judged; then the held-out data's own row."""
    from genneg.generate import timed_generate
    from genneg.rng import stream_seed

    from .references import data_samples

    t0 = time.perf_counter()
    cond = domain.conditions(n, SPLIT, stream_seed(seed, "demo", "conditions"))
    sampler = loaded[0].cfg.sampler  # one sampler for all: the same noise gives the same integration
    oracle = domain.oracle()
    rows = []
    for m in loaded:
        say(f"sampling {n} scenes from {m.label} ({sampler.kind}, {sampler.steps} steps)")
        x0, wall = timed_generate(m.denoiser, domain.sample_shape, n, sampler, cond,
                                  seed=stream_seed(seed, "demo", "samples"), device=m.cfg.device)
        samples = domain.decode(x0, cond)
        rows.append(_judged(m.label, str(m.folder), samples, cond, domain, oracle, wall))
    say(f"judging the held-out data on the same {n} conditions")
    samples = data_samples(domain.table, domain.table.lookup(cond["scene"]))
    rows.append(_judged(DATA_LABEL, None, samples, cond, domain, oracle, None))
    for r in rows:
        say(f"  {r['label']}: invalid {_pct(r['infraction']['total'])}")
    return rows, time.perf_counter() - t0


def _judged(label_: str, folder, samples: dict, cond, domain, oracle, wall) -> dict:
    from genneg.evaluate import domain_metrics, infraction_summary
    from genneg.labelling import label

    result = label(oracle, samples, cond)
    row = {"label": label_, "folder": folder, "samples": samples, "result": result,
           "infraction": infraction_summary(result), "domain": domain_metrics(domain, samples, cond, result, SPLIT)}
    if wall is not None:
        row["sampling_seconds"] = wall
        row["seconds_per_1000"] = 1000 * wall / len(samples["scene"])
    return row


def _handoff(domain, rows: list[dict], k: int, seconds: float, workers: int) -> None:
    """The first ``k`` scenes of every row to SUMO in one pool of ``workers`` processes; each row gets the summary
    of its own scenes (``row["handoff"]``)."""
    from .handoff import handoff_scenes, handoff_summary, world_scenes

    scenes = [s for row in rows for s in world_scenes(row["samples"], domain.table, np.arange(k))]
    outs = handoff_scenes(scenes, seconds=seconds, workers=workers)["scenes_out"]
    for i, row in enumerate(rows):
        mine = slice(i * k, (i + 1) * k)
        row["handoff"] = handoff_summary(outs[mine], [len(boxes) for _, boxes in scenes[mine]], seconds)


def _figure(domain, rows: list[dict], columns: int, path: Path) -> None:
    """Rows: models (then the data); columns: the first scenes, the same maps in every row; infracting boxes red."""
    if not columns:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genneg.checkpoint import atomic_write

    fig, axes = plt.subplots(len(rows), columns, figsize=(2.9 * columns, 3.1 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(columns):
            scene = int(row["samples"]["scene"][c])
            domain.plot(row["samples"], None, None, axes[r, c], title=str(domain.table.network[scene]), index=c)
        axes[r, 0].set_ylabel(row["label"], fontsize=11)
    fig.suptitle("the same held-out maps and ego per column; red: boxes the oracle flags (collision or off-road)",
                 fontsize=9)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- report


def _record(loaded, absent, rows, domain, cfg, n, handoff, columns, seconds, seed, timings) -> dict:
    networks = sorted(set(domain.table.network[domain.table.ids(SPLIT)]))
    from genneg.pretrained import card_stage

    models = {m.label: {"folder": str(m.folder), "name": m.card["name"], "stage": card_stage(m.card),
                        "parameters": m.card["architecture"]["parameters"], "steps": m.card["training"]["steps"],
                        "card_metrics": m.card["metrics"]["infraction"]["total"]} for m in loaded}
    out_rows = []
    for r in rows:
        keep = {k: v for k, v in r.items() if k not in ("samples", "result")}
        keep["model"] = models.get(r["label"])
        out_rows.append(keep)
    return {"domain": "traffic", "data": dict(cfg.data), "split": SPLIT, "networks": networks,
            "scenes_in_split": int(len(domain.table.ids(SPLIT))), "num_samples": n, "seed": seed,
            "sampler": cfg.to_dict()["sampler"], "handoff": {"scenes": handoff, "seconds": seconds},
            "columns": columns, "absent": list(absent), "rows": out_rows,
            "timings_seconds": {k: round(v, 2) for k, v in timings.items()}}


def _pct(r: dict, digits: int = 1) -> str:
    """A rate ``{"rate", "lo", "hi"}`` as "x [lo, hi]" in %; empty when there was nothing to count."""
    if math.isnan(r["rate"]):
        return ""
    return f"{100 * r['rate']:.{digits}f} [{100 * r['lo']:.{digits}f}, {100 * r['hi']:.{digits}f}]"


def _measure(m: dict | None, scale: float) -> str:
    if m is None:
        return ""
    text = f"{scale * m['value']:.3g}"
    if not (math.isnan(m["lo"]) or math.isnan(m["hi"])):
        text += f" [{scale * m['lo']:.3g}, {scale * m['hi']:.3g}]"
    return text


def markdown(record: dict, figure: str | None) -> str:
    """``report.md`` of a demo record (``demo.json``)."""
    rows, n = record["rows"], record["num_samples"]
    t = record["timings_seconds"]
    reasons = list(rows[0]["infraction"]["reasons"])
    lines = [
        "# Traffic demo: shipped models on held-out road networks", "",
        f"{n} scenes per row on the same {n} conditions (ego, map, vehicle slots) drawn from the "
        f"{record['scenes_in_split']:,} scenes of the {len(record['networks'])} held-out `{record['split']}` networks "
        f"(data preset `{record['data']['preset']}`), every model from the same noise with the same sampler "
        f"({record['sampler']['kind']}, {record['sampler']['steps']} steps). Rates in % with 95 % Wilson intervals "
        "over scenes; the measures' intervals are bootstrapped over road networks (`docs/traffic.md`, "
        "\"Evaluation\"). The last row is the conditions' own data vehicles.", "",
    ]
    kinds = {"base": "the base denoiser", "distilled": "the distilled Gen-neG student"}
    lines += ["Models: " + "; ".join(
        f"`{r['model']['folder']}` ({kinds.get(r['model']['stage'], r['model']['stage'])}, "
        f"{r['model']['parameters'] / 1e6:.2f} M parameters, {r['model']['steps']:,} training steps)"
        for r in rows if r.get("model")) + ".", ""]
    if record["absent"]:
        lines += [f"Not there yet: {', '.join(f'`{a}`' for a in record['absent'])}; its row appears once it is "
                  "shipped.", ""]
    lines += ["## Oracle", "", "| | invalid % | " + " | ".join(f"{k} %" for k in reasons) + " | s / 1k scenes |",
              "|---|---|" + "---|" * len(reasons) + "---|"]
    for r in rows:
        inf = r["infraction"]
        cost = f"{r['seconds_per_1000']:.0f}" if "seconds_per_1000" in r else ""
        lines.append(f"| {r['label']} | {_pct(inf['total'])} | " + " | ".join(_pct(inf["reasons"][k]) for k in reasons)
                     + f" | {cost} |")
    lines += ["", "## Measures", "", "| measure | " + " | ".join(r["label"] for r in rows) + " |",
              "|---|" + "---|" * len(rows)]
    for key, name in HEADLINE.items():
        scale = 100 if name.endswith("%") else 1
        lines.append(f"| {name} | " + " | ".join(_measure(r["domain"].get(key), scale) for r in rows) + " |")
    if record["handoff"]["scenes"]:
        h = record["handoff"]
        lines += ["", "## SUMO hand-off", "",
                  f"The first {h['scenes']} scenes of each row placed on their network with libsumo and simulated "
                  f"for {h['seconds']:g} s (`domains/traffic/handoff.py`): vehicles SUMO placed (of those handed "
                  "off), scenes with a collision SUMO reports, vehicles in a collision or teleported (of those "
                  "placed), and the mean distance between the asked and the actual front bumper after the first "
                  "step. Vehicles of one scene are not independent: their intervals are optimistic.", "",
                  "| | scenes | vehicles | placed % | scenes in a collision % | vehicles in a collision % | "
                  "teleported % | placement error (m) |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            s = r.get("handoff")
            if s is None:
                continue
            q = s["rates"]
            err = s["placement_error_m"]["mean"]
            failed = f" ({len(s['failed'])} failed)" if s["failed"] else ""
            lines.append(f"| {r['label']} | {s['scenes']}{failed} | {s['vehicles']} | {_pct(q['placed'], 0)} | "
                         f"{_pct(q['scenes_with_collision'], 0)} | {_pct(q['vehicles_in_collision'], 0)} | "
                         f"{_pct(q['teleported'], 0)} | {'' if math.isnan(err) else f'{err:.2f}'} |")
    if figure:
        lines += ["", "## Scenes", "", f"Rows: {', '.join(r['label'] for r in rows)}; columns: the first "
                  f"{record['columns']} conditions (the same maps and ego in every row). Red boxes break a rule.", "",
                  f"![scenes]({figure})"]
    lines += ["", "## Time", "",
              f"{t['total']:.0f} s in all: data {t['data']:.0f} s, loading the models {t['load']:.0f} s, sampling "
              f"and judging {t['sampling']:.0f} s, SUMO {t['handoff']:.0f} s, figure {t['figure']:.0f} s.", ""]
    return "\n".join(lines)
