"""Generated scenes as SUMO simulation starts: place the vehicles on their network with libsumo, simulate, and
report what SUMO says (collisions, teleports, vehicles it could not place).

Each vehicle gets a route from the edge SUMO maps its position to (``simulation.convertRoad``) to a reachable edge
(``simulation.findRoute``), is added with ``vehicle.add`` and put at its exact pose with ``vehicle.moveToXY``
(``keepRoute=2``: any lane). SUMO's position is the front bumper and its angle compass degrees, so
``front = centre + L/2 (cos yaw, sin yaw)`` and ``angle = 90 − degrees(yaw)``. libsumo holds one simulation per
process: ``simulate_scene`` runs in a fresh spawned process unless told otherwise.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
from pathlib import Path

import numpy as np

__all__ = ["simulate_scene", "sumo_pose"]


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


def _simulate(net_file: str, boxes: list, seconds: float, step_length: float, seed: int) -> dict:
    import libsumo

    from domains.traffic.data.sumo import sumo_home

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
