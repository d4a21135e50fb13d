"""Generated scenes as SUMO simulation starts: place the vehicles on their network with libsumo, simulate, and
report what SUMO says (collisions, teleports, vehicles it could not place).

Each vehicle gets a route from the edge SUMO maps its position to (``simulation.convertRoad``) to a reachable edge
(``simulation.findRoute``), is added with ``vehicle.add`` and put at its exact pose with ``vehicle.moveToXY``
(``keepRoute=2``: any lane). SUMO's position is the front bumper and its angle compass degrees, so
``front = centre + L/2 (cos yaw, sin yaw)`` and ``angle = 90 − degrees(yaw)``. libsumo holds one simulation per
process: ``simulate_scene`` runs in a fresh spawned process unless told otherwise, and ``handoff_scenes`` runs a
list of scenes one after another in a few spawned processes and sums up what SUMO said (``handoff_summary``).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from pathlib import Path

import numpy as np

from genneg.stats import wilson_interval

__all__ = ["simulate_scene", "sumo_pose", "world_scenes", "handoff_scenes", "handoff_summary"]


def sumo_pose(box) -> tuple[float, float, float]:
    """Box (x, y, yaw, length, width) -> SUMO (front bumper x, front bumper y, compass angle in degrees)."""
    x, y, yaw, length = (float(v) for v in box[:4])
    return x + length / 2 * np.cos(yaw), y + length / 2 * np.sin(yaw), float((90.0 - np.degrees(yaw)) % 360.0)


def simulate_scene(net_file: str | Path, world_boxes, *, seconds: float = 10.0, step_length: float = 0.1,
                   seed: int = 0, subprocess: bool = True) -> dict:
    """Places one scene's vehicles (world frame) on ``net_file`` and simulates ``seconds``.

    Args:
        world_boxes: [M, 5] (x, y, yaw, length, width) in the network's coordinates (``export.to_world``).
        subprocess: run libsumo in a spawned process (libsumo allows one simulation per process).

    Returns:
        ``{"placed": [ids], "not_placed": {id: reason}, "placement_error": {id: metres after the first step},
        "collisions": [{"collider", "victim", "type", "time"}],
        "colliding_vehicles": [ids], "teleports": [ids], "arrived": [ids], "remaining": [ids], "seconds": s}``.
    """
    boxes = np.asarray(world_boxes, np.float64).reshape(-1, 5)
    if not Path(net_file).is_file():
        raise FileNotFoundError(f"SUMO network not found: {net_file}")
    if seconds <= 0 or step_length <= 0:
        raise ValueError(f"seconds and step_length must be > 0, got {seconds}, {step_length}")
    args = (str(net_file), boxes.tolist(), float(seconds), float(step_length), int(seed))
    if not subprocess:
        return _simulate(*args)
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_simulate, *args).result()


def world_scenes(samples: dict, table, rows=None) -> list[tuple[str, np.ndarray]]:
    """Decoded samples as hand-off input: ``(network file, world boxes [M, 5] of the defined vehicles, ego first)``
    per scene.

    Args:
        samples: ``{"boxes" [B, N, 5], "defined" [B, N], "scene" [B]}`` (``TrafficDomain.decode``).
        table: the domain's ``SceneTable`` (world origin and network file of each scene id).
        rows: which samples (default: all), in this order.
    """
    from .export import to_world

    rows = np.arange(len(samples["scene"])) if rows is None else np.asarray(rows, np.int64)
    ids = table.lookup(np.asarray(samples["scene"])[rows])
    world = to_world(np.asarray(samples["boxes"], np.float64)[rows], table.origin[ids])
    defined = np.asarray(samples["defined"], bool)[rows]
    return [(table.network_files[str(table.network[sid])], world[b][defined[b]]) for b, sid in enumerate(ids)]


def handoff_scenes(scenes, *, seconds: float = 10.0, step_length: float = 0.1, seed: int = 0,
                   workers: int = 1) -> dict:
    """Hands each scene to SUMO (``simulate_scene``) and sums up what SUMO reported (``handoff_summary``).

    The scenes run one after another in ``workers`` spawned processes (libsumo holds one simulation per process, and
    each scene starts and closes its own). A scene that SUMO cannot run at all is kept in the summary's ``failed``
    with its error and left out of every count.

    Args:
        scenes: ``(network file, world boxes [M, 5])`` pairs (``world_scenes``).
        seconds, step_length, seed: of every scene's simulation (``simulate_scene``).
        workers: processes that run the scenes.

    Returns:
        ``handoff_summary`` of the outcomes, plus ``"scenes_out"``: each scene's ``simulate_scene`` output (or
        ``{"error": message}``), in the given order.

    Raises:
        FileNotFoundError: a scene's network file does not exist. ValueError: bad boxes, times or workers.
    """
    if seconds <= 0 or step_length <= 0:
        raise ValueError(f"seconds and step_length must be > 0, got {seconds}, {step_length}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = []
    for i, (net, boxes) in enumerate(scenes):
        boxes = np.asarray(boxes, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 5 or len(boxes) == 0 or not np.isfinite(boxes).all():
            raise ValueError(f"scene {i}: world boxes must be a finite [M >= 1, 5] array (x, y, yaw, length, "
                             f"width), got shape {boxes.shape}")
        if not Path(net).is_file():
            raise FileNotFoundError(f"scene {i}: SUMO network not found: {net}")
        jobs.append((str(net), boxes.tolist(), float(seconds), float(step_length), int(seed)))
    if not jobs:
        raise ValueError("no scene to hand off")
    with cf.ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        outs = list(pool.map(_simulate_or_error, jobs))
    return {**handoff_summary(outs, [len(j[1]) for j in jobs], seconds), "scenes_out": outs}


def _simulate_or_error(job: tuple) -> dict:
    try:
        return _simulate(*job)
    except Exception as e:  # noqa: BLE001 - one scene SUMO cannot run must not end the others
        return {"error": f"{type(e).__name__}: {e}"}


def _rate(count: int, n: int) -> dict:
    lo, hi = wilson_interval(count, n)
    return {"count": int(count), "n": int(n), "rate": count / n if n else float("nan"), "lo": lo, "hi": hi}


def handoff_summary(outs: list[dict], vehicles: list[int], seconds: float) -> dict:
    """What SUMO reported on a list of handed-off scenes, summed.

    Args:
        outs: ``simulate_scene`` outputs (or ``{"error": message}`` for a scene SUMO could not run), one per scene.
        vehicles: vehicles handed off in each scene.
        seconds: the simulated time of each scene.

    Returns:
        ``{"scenes", "vehicles", "seconds", "failed": [{"scene", "error"}], "rates": {name: {"count", "n", "rate",
        "lo", "hi"}}, "placement_error_m": {"mean", "max", "n"}}`` over the scenes that ran. The rates (95 % Wilson
        intervals; vehicles of one scene are not independent, so the vehicle intervals are optimistic):
        ``placed`` (of the vehicles handed off), ``scenes_with_collision`` (of the scenes), ``vehicles_in_collision``
        and ``teleported`` (of the vehicles placed). The placement error is metres between the asked and the
        actual front bumper after the first step, over the placed vehicles still there.

    Raises:
        ValueError: ``outs`` and ``vehicles`` differ in length.
    """
    if len(outs) != len(vehicles):
        raise ValueError(f"got {len(outs)} hand-off outputs for {len(vehicles)} scenes")
    ran = [(o, m) for o, m in zip(outs, vehicles) if "error" not in o]
    failed = [{"scene": i, "error": o["error"]} for i, o in enumerate(outs) if "error" in o]
    total = sum(m for _, m in ran)
    placed = sum(len(o["placed"]) for o, _ in ran)
    errors = [e for o, _ in ran for e in o.get("placement_error", {}).values()]
    return {
        "scenes": len(ran), "vehicles": total, "seconds": float(seconds), "failed": failed,
        "rates": {
            "placed": _rate(placed, total),
            "scenes_with_collision": _rate(sum(bool(o["colliding_vehicles"]) for o, _ in ran), len(ran)),
            "vehicles_in_collision": _rate(sum(len(o["colliding_vehicles"]) for o, _ in ran), placed),
            "teleported": _rate(sum(len(o["teleports"]) for o, _ in ran), placed),
        },
        "placement_error_m": {"mean": float(np.mean(errors)) if errors else float("nan"),
                              "max": float(np.max(errors)) if errors else float("nan"), "n": len(errors)},
    }


def _simulate(net_file: str, boxes: list, seconds: float, step_length: float, seed: int) -> dict:
    import libsumo

    from genneg.domains.traffic.data.sumo import sumo_home

    libsumo.start([str(sumo_home() / "bin" / "sumo"), "-n", net_file, "--step-length", str(step_length),
                   "--seed", str(seed), "--no-step-log", "true", "--no-warnings", "true",
                   "--collision.check-junctions", "true", "--collision.action", "warn"])
    out = {"placed": [], "not_placed": {}, "collisions": [], "teleports": [], "arrived": []}
    try:
        for i, box in enumerate(boxes):
            why = _place(libsumo, f"v{i}", box, seed + i)
            if why:
                out["not_placed"][f"v{i}"] = why
            else:
                out["placed"].append(f"v{i}")
        for k in range(max(1, int(round(seconds / step_length)))):
            libsumo.simulationStep()
            t = libsumo.simulation.getTime()
            if k == 0:
                out["placement_error"] = _placement_error(libsumo, boxes, out["placed"])
            out["collisions"] += [{"collider": c.collider, "victim": c.victim, "type": c.type, "time": t}
                                  for c in libsumo.simulation.getCollisions()]
            out["teleports"] += list(libsumo.simulation.getStartingTeleportIDList())
            out["arrived"] += list(libsumo.simulation.getArrivedIDList())
        out["remaining"] = sorted(libsumo.vehicle.getIDList())
    finally:
        libsumo.close()
    out["colliding_vehicles"] = sorted({v for c in out["collisions"] for v in (c["collider"], c["victim"])})
    out["teleports"] = sorted(set(out["teleports"]))
    out["seconds"] = seconds
    return out


def _placement_error(libsumo, boxes, placed: list[str]) -> dict[str, float]:
    """Metres between each placed vehicle's requested front bumper and where SUMO put it after the first step."""
    live = set(libsumo.vehicle.getIDList())
    err = {}
    for vid in placed:
        if vid in live:
            fx, fy, _ = sumo_pose(boxes[int(vid[1:])])
            x, y = libsumo.vehicle.getPosition(vid)
            err[vid] = float(np.hypot(x - fx, y - fy))
    return err


def _place(libsumo, vid: str, box, seed: int) -> str:
    """Adds vehicle ``vid`` at ``box``; returns "" or why it could not be placed."""
    fx, fy, angle = sumo_pose(box)
    try:
        edge, _, lane = libsumo.simulation.convertRoad(fx, fy, False, "passenger")
    except libsumo.TraCIException as e:
        return f"no road near ({fx:.1f}, {fy:.1f}): {e}"
    start = edge if not edge.startswith(":") else _next_edge(libsumo, f"{edge}_{lane}")
    if not start:
        return f"on junction {edge} with no outgoing lane"
    route = _route_from(libsumo, start, seed)
    libsumo.route.add(f"r_{vid}", route)
    libsumo.vehicle.add(vid, f"r_{vid}", depart="now")
    libsumo.vehicle.setLength(vid, float(box[3]))
    libsumo.vehicle.setWidth(vid, float(box[4]))
    libsumo.vehicle.moveToXY(vid, edge, lane, fx, fy, angle, 2)
    return ""


def _next_edge(libsumo, lane_id: str) -> str:
    links = libsumo.lane.getLinks(lane_id)
    return libsumo.lane.getEdgeID(links[0][0]) if links else ""


def _route_from(libsumo, start: str, seed: int, tries: int = 20) -> list[str]:
    """The longest of a few shortest routes from ``start`` to random edges (so vehicles keep driving)."""
    edges = [e for e in libsumo.edge.getIDList() if not e.startswith(":")]
    rng = np.random.default_rng(seed)
    best = [start]
    for target in rng.choice(edges, size=min(tries, len(edges)), replace=False):
        found = list(libsumo.simulation.findRoute(start, str(target), vType="DEFAULT_VEHTYPE").edges)
        if len(found) > len(best):
            best = found
    return best
