"""The run report: one row per stage and baseline, mean and interval over seeds; report.md, results.json, figures."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import distributed  # noqa: E402
from .checkpoint import write_json  # noqa: E402
from .config import BASELINES, RunConfig  # noqa: E402
from .domain import Domain  # noqa: E402
from .stats import mean_interval  # noqa: E402

__all__ = ["aggregate", "write_report", "STAGE_LABELS"]

STAGE_LABELS = {
    "base": "base model",
    "distilled": "Gen-neG distilled",
    "rejection": "rejection sampling (base + oracle)",
    "no_is": "ablation: round 1 w/o importance weights",
    "time_independent": "ablation: round 1 time-independent classifier",
    "discriminator": "discriminator guidance",
    "penalty": "differentiable-penalty guidance",
}


def stage_order(cfg: RunConfig) -> list[str]:
    rounds = [f"round{k}" for k in range(1, cfg.genneg.rounds + 1)]
    return ["base", *rounds, "distilled", *[b for b in BASELINES if b in cfg.genneg.baselines]]


def _label(stage: str) -> str:
    if stage.startswith("round"):
        return f"Gen-neG round {stage[5:]} (stacked guidance)"
    return STAGE_LABELS.get(stage, stage)


def aggregate(cfg: RunConfig, per_seed: dict[int, dict]) -> dict:
    """Mean and 95 % interval over seeds of every metric of every stage present in all seeds."""
    rows = {}
    for stage in stage_order(cfg):
        recs = [st[stage] for st in per_seed.values() if stage in st]
        if not recs:
            continue
        ms = [r["metrics"] for r in recs]
        base = [st["base"]["metrics"] for st in per_seed.values() if stage in st]
        row = {
            "label": _label(stage),
            "seeds": len(recs),
            "infraction": mean_interval([m["infraction"]["total"]["rate"] for m in ms]),
            "reasons": {k: mean_interval([m["infraction"]["reasons"][k]["rate"] for m in ms])
                        for k in ms[0]["infraction"]["reasons"]},
            "wilson_first_seed": [ms[0]["infraction"]["total"]["lo"], ms[0]["infraction"]["total"]["hi"]],
            "undefined": sum(m["infraction"]["undefined"] for m in ms),
            "seconds_per_1000": mean_interval([m["seconds_per_1000"] for m in ms]),
            "valid_per_second": mean_interval([m["valid_per_second"] for m in ms]),
            "stage_seconds": sum(r.get("seconds", 0.0) for r in recs),
        }
        if all("nll" in m for m in ms):
            row["nll"] = mean_interval([m["nll"]["mean"] for m in ms])
            row["nll_se_first_seed"] = ms[0]["nll"]["se"]
            gains = [b["nll"]["mean"] - m["nll"]["mean"] for b, m in zip(base, ms)]
            ceilings = [-math.log(max(1 - b["infraction"]["total"]["rate"], 1e-12)) for b in base]
            row["elbo_gain"] = mean_interval(gains)
            row["ceiling"] = mean_interval(ceilings)
            if all("diff_base" in m["nll"] for m in ms):  # paired: same points and noise as the base, per seed
                diffs = [m["nll"]["diff_base"] for m in ms]
                row["nll_diff"] = {"mean": sum(d["mean"] for d in diffs) / len(diffs),
                                   "se": math.sqrt(sum(d["se"] ** 2 for d in diffs)) / len(diffs)}
        if "round" in recs[0]:
            row["alpha"] = mean_interval([r["round"]["alpha"] for r in recs])
            row["collapsed"] = [bool(r["round"].get("classifier", {}).get("collapsed")) for r in recs]
            row["skipped"] = [r["round"]["skipped"] for r in recs if r["round"]["skipped"]]
            if all("reasons" in r["round"].get("classifier", {}) for r in recs):
                row["per_reason"] = _per_reason([r["round"]["classifier"]["reasons"] for r in recs])
        if all("domain" in m for m in ms):
            row["domain"] = {k: {**mean_interval([m["domain"][k]["value"] for m in ms]),
                                 "first_seed": [ms[0]["domain"][k]["lo"], ms[0]["domain"][k]["hi"]]}
                             for k in ms[0]["domain"] if all(k in m["domain"] for m in ms)}
        if stage == "rejection":
            row["raw_samples_per_valid"] = mean_interval([m["raw_samples_per_valid"] for m in ms])
        rows[stage] = row
    summary = {}
    if "base" in rows and "distilled" in rows:
        b, d = rows["base"]["infraction"]["mean"], rows["distilled"]["infraction"]["mean"]
        summary["infraction_reduction"] = b / d if d > 0 else math.inf
        if "nll" in rows["distilled"]:
            summary["distilled_nll_minus_base"] = rows["distilled"]["nll"]["mean"] - rows["base"]["nll"]["mean"]
        if "nll_diff" in rows["distilled"]:
            d = rows["distilled"]["nll_diff"]
            summary["distilled_nll_diff"] = d
            summary["distilled_nll_not_worse"] = bool(d["mean"] <= d["se"])  # within its standard error
    return {"rows": rows, "summary": summary}


def _per_reason(reports: list[dict]) -> dict:
    """Per reason over seeds (``fitting.fit_per_reason`` reports): α, the σ window's top, whether it was per
    element, seeds in which it collapsed or got no classifier."""
    out = {}
    for k in reports[0]:
        fitted = [rep[k] for rep in reports if "alpha" in rep.get(k, {})]
        out[k] = {"alpha": mean_interval([f["alpha"] for f in fitted]),
                  "sigma_max": mean_interval([f["informative_sigma_max"] for f in fitted]),
                  "elementwise": any(f["elementwise"] for f in fitted),
                  "collapsed": sum(bool(f["collapsed"]) for f in fitted), "skipped": len(reports) - len(fitted)}
    return out


def _pct(mi: dict) -> str:
    hw = mi["half_width"]
    return f"{100 * mi['mean']:.2f}" + ("" if math.isnan(hw) else f" ± {100 * hw:.2f}")


def _num(mi: dict, fmt: str = ".3f") -> str:
    hw = mi["half_width"]
    return f"{mi['mean']:{fmt}}" + ("" if math.isnan(hw) else f" ± {hw:{fmt}}")


def _domain_table(rows: dict) -> list[str]:
    """The domain's own measures (``Domain.metrics``): a row per measure, a column per stage; mean over seeds, and
    for one seed the interval the domain gave."""
    stages = [st for st, r in rows.items() if r.get("domain")]
    if not stages:
        return []
    names = list(dict.fromkeys(k for st in stages for k in rows[st]["domain"]))

    def cell(st: str, k: str) -> str:
        d = rows[st]["domain"].get(k)
        if d is None:
            return ""
        lo, hi = d["first_seed"]
        if d["n"] > 1:
            return _num(d, ".4g")
        return f"{d['mean']:.4g}" + ("" if math.isnan(lo) else f" [{lo:.4g}, {hi:.4g}]")

    out = ["", "| measure | " + " | ".join(rows[st]["label"] for st in stages) + " |", "|" + "---|" * (len(stages) + 1)]
    out += ["| " + " | ".join([k, *[cell(st, k) for st in stages]]) + " |" for k in names]
    return out


def markdown(domain_name: str, cfg: RunConfig, agg: dict, wall: float, n_seeds: int) -> str:
    rows = agg["rows"]
    reasons = list(next(iter(rows.values()))["reasons"]) if rows else []
    head = ["stage", "infraction %", *[f"{r} %" for r in reasons], "NLL bound (nats)", "ΔNLL vs base (paired)",
            "ceiling",
            "α", "s / 1k samples", "valid / s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage, r in rows.items():
        diff = f"{r['nll_diff']['mean']:+.3f} ± {r['nll_diff']['se']:.3f}" if "nll_diff" in r else ""
        ceiling = f"{r['ceiling']['mean']:.3f}" if "ceiling" in r else ""
        cells = [r["label"], _pct(r["infraction"]), *[_pct(r["reasons"][k]) for k in reasons],
                 _num(r["nll"]) if "nll" in r else "", diff, ceiling, _num(r["alpha"]) if "alpha" in r else "",
                 _num(r["seconds_per_1000"], ".2f"), _num(r["valid_per_second"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _domain_table(rows)
    s = agg["summary"]
    notes = [
        f"# genneg run: {domain_name}, preset `{cfg.preset}`, {n_seeds} seed(s)",
        "",
        f"Summed time of all stages over all seeds: {wall / 60:.1f} min (seeds run in parallel take less wall time)."
        " Intervals are 95 % t-intervals over seeds (none for one seed;"
        " see results.json for per-seed Wilson intervals and standard errors). NLL bounds are on the same"
        f" {cfg.eval.num_nll} held-out points for every stage; infraction rates on {cfg.eval.num_samples} samples."
        " ΔNLL is each stage's bound minus the base's on the same points and noise (paired; ± its standard error)."
        " The ceiling is −log α of the base model: what exact rejection sampling gains.",
        "",
        *lines,
        "",
    ]
    if "infraction_reduction" in s:
        d = s.get("distilled_nll_diff", {"mean": s.get("distilled_nll_minus_base", math.nan), "se": math.nan})
        notes.append(f"Distilled vs base: infraction {s['infraction_reduction']:.1f}× lower; NLL bound "
                     f"{d['mean']:+.3f} ± {d['se']:.3f} nats (paired).")
    for stage, r in rows.items():
        if any(r.get("collapsed", [])):
            notes.append(f"- {r['label']}: classifier collapsed to the prior in {sum(r['collapsed'])} seed(s): "
                         "it guides nothing.")
        for why in r.get("skipped", []):
            notes.append(f"- {r['label']}: round skipped ({why}).")
        if "per_reason" in r:
            notes.append(f"- {r['label']}: one classifier per reason: " + "; ".join(
                f"{k} ({'per element' if v['elementwise'] else 'per sample'}, α {_num(v['alpha'])}, guides up to "
                f"σ = {_num(v['sigma_max'], '.3g')}, collapsed in {v['collapsed']} seed(s), skipped in {v['skipped']})"
                for k, v in r["per_reason"].items()) + ".")
        if r["undefined"]:
            notes.append(f"- {r['label']}: {r['undefined']} samples had no oracle verdict (excluded).")
    notes += ["", "![samples per stage](figures/samples.png)", "",
              "![infraction vs NLL](figures/infraction_vs_nll.png)", ""]
    return "\n".join(notes)


def plot_tradeoff(agg: dict, path: Path, max_excess_nats: float = 10.0):
    """Infraction rate vs NLL bound per stage; stages whose bound is far off (a collapsed ablation) are named in the
    corner instead of squashing the axes."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    base_nll = agg["rows"].get("base", {}).get("nll", {}).get("mean", math.inf)
    off_scale = []
    for stage, r in agg["rows"].items():
        if "nll" not in r:
            continue
        x, y = 100 * r["infraction"]["mean"], r["nll"]["mean"]
        if y > base_nll + max_excess_nats:
            off_scale.append(f"{r['label']}: {100 * r['infraction']['mean']:.1f} %, {y:.3g} nats")
            continue
        xerr = 0 if math.isnan(r["infraction"]["half_width"]) else 100 * r["infraction"]["half_width"]
        yerr = r["nll_se_first_seed"] if math.isnan(r["nll"]["half_width"]) else r["nll"]["half_width"]
        ax.errorbar(max(x, 1e-3), y, xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=r["label"])
    if off_scale:
        ax.text(0.99, 0.01, "off scale:\n" + "\n".join(off_scale), transform=ax.transAxes, ha="right", va="bottom",
                fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("infraction rate (%), log scale (0 % drawn at 0.001 %)")
    ax.set_ylabel("NLL bound (nats, lower is better)")
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_samples(domain: Domain, stages: list[str], seed_dir: Path, path: Path):
    from .run import load_samples

    present = [s for s in stages if (seed_dir / f"samples_{s}.npz").exists()]
    cols = min(4, len(present))
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax, stage in zip(axes.flat, present):
        samples, result = load_samples(seed_dir / f"samples_{stage}.npz")
        domain.plot(samples, None, result, ax, title=_label(stage))
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(domain: Domain, cfg: RunConfig, run_dir: Path, per_seed: dict[int, dict]) -> dict:
    """Writes report.md, results.json and figures/ to ``run_dir``; returns the aggregate.

    Under ``torchrun`` rank 0 writes; the other ranks wait for it, so every rank can read the report after.
    """
    agg = aggregate(cfg, per_seed)
    wall = sum(rec.get("seconds", 0.0) for st in per_seed.values() for rec in st.values())
    if not distributed.is_main():
        distributed.barrier()
        return {**agg, "wall_seconds": wall}
    fig_dir = run_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    plot_tradeoff(agg, fig_dir / "infraction_vs_nll.png")
    plot_samples(domain, stage_order(cfg), run_dir / f"seed{min(per_seed)}", fig_dir / "samples.png")
    write_json(run_dir / "results.json", {"config": cfg.to_dict(), "wall_seconds": wall, "aggregate": agg,
                                          "per_seed": {str(k): v for k, v in per_seed.items()}})
    tmp = run_dir / ".report.md.tmp"
    tmp.write_text(markdown(domain.name, cfg, agg, wall, len(per_seed)))
    tmp.replace(run_dir / "report.md")
    distributed.barrier()
    return {**agg, "wall_seconds": wall}
