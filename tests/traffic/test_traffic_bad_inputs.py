"""Bad inputs to the traffic domain: its oracles (boxes, drivable areas), road maps, SUMO networks, lanelet2 maps,
INTERACTION tracks, scene files and the missing ``genneg[traffic]`` extra. Each must fail with the right error type
and a message that names the problem (and, for a file, the file). Table-driven like the engine's table
(``tests/reliability/test_bad_inputs.py``), with the shared helpers of ``tests/bad_inputs.py``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from bad_inputs import INF, NAN, Bad, BadInputTable, file_cases, without

from genneg.domain import get_domain
from genneg.oracle import get_oracle

shapely = pytest.importorskip("shapely")

CAR = (0.0, 0.0, 0.0, 4.0, 2.0)
ROAD = shapely.box(-50, -5, 50, 5)
BOW_TIE = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])  # self-intersecting
LINE = np.array([[0.0, 0.0], [10.0, 0.0]])
SUMO_NET = (
    '<net version="1.20"><location netOffset="0,0" convBoundary="0,0,100,0" origBoundary="0,0,100,0" '
    'projParameter="!"/><edge id="e" from="a" to="b"><lane id="e_0" index="0" speed="13" length="100" '
    'shape="0,0 100,0"/></edge><junction id="a" type="dead_end" x="0" y="0" incLanes="" intLanes="" '
    'shape="0,-2 0,2"/><junction id="b" type="dead_end" x="100" y="0" incLanes="e_0" intLanes="" '
    'shape="100,-2 100,2"/></net>'
)


def write_traffic_files(r: Path) -> None:
    """INTERACTION tracks, SUMO networks, lanelet2 maps and scene files, each bad in one way (and one good net)."""
    from genneg.domains.traffic.data.interaction import TRACK_COLUMNS

    head = ",".join(TRACK_COLUMNS)
    (r / "tracks_header.csv").write_text("a,b,c\n1,2,3\n")
    (r / "tracks_only_header.csv").write_text(head + "\n")
    (r / "tracks_short_row.csv").write_text(head + "\n1,1,100,car,0,0,0,0,0,4\n")
    (r / "tracks_text.csv").write_text(head + "\n1,1,100,car,zero,0,0,0,0,4,2\n")
    (r / "tracks_nan.csv").write_text(head + "\n1,1,100,car,nan,0,0,0,0,4,2\n")
    (r / "tracks_neg.csv").write_text(head + "\n1,1,100,car,0,0,0,0,0,-4,2\n")
    (r / "tracks_binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    # SUMO networks
    (r / "ok.net.xml").write_text(SUMO_NET)
    (r / "trunc.net.xml").write_text(SUMO_NET[: len(SUMO_NET) // 2])
    (r / "trunc.net.xml.gz").write_bytes(gzip.compress(SUMO_NET.encode())[:40])
    (r / "routes.net.xml").write_text('<routes><vehicle id="v" depart="0"/></routes>')
    (r / "garbage.net.xml").write_bytes(b"\x89PNG\x00\x01 not xml")
    (r / "empty.net.xml").write_text("")
    # lanelet2 maps
    (r / "trunc.osm").write_text('<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="0" lon="0"/>')
    (r / "nolanelet.osm").write_text('<?xml version="1.0"?>\n<osm version="0.6"><node id="1" lat="0" lon="0"/></osm>')
    (r / "garbage.osm").write_bytes(b"\x00\x01garbage")
    # traffic scene files
    whole = (r / "plain.npz").read_bytes()
    (r / "scenes" / "networks").mkdir(parents=True)  # one network file per split: truncated, partial, missing
    (r / "scenes" / "networks" / "train-a.scenes.npz").write_bytes(whole[:30])
    np.savez(r / "scenes" / "networks" / "val-a.scenes.npz", boxes=np.zeros((2, 3, 5), np.float32))
    (r / "scenes" / "manifest.json").write_text(json.dumps({"digest": "x", "networks": [
        {"name": f"{s}-a", "split": s} for s in ("train", "val", "test")]}))
    (r / "scenes_bad").mkdir()
    (r / "scenes_bad" / "manifest.json").write_text('{"digest": ')
    (r / "scenes_list.json").write_text("[1, 2]")
    (r / "scenes_other.json").write_text('{"format": "something else", "scenes": []}')


def _boxes(*rows):
    return np.array([rows], dtype=np.float64)


def _traffic(**kw):
    from genneg.domains.traffic import TrafficDomain

    return TrafficDomain(**kw)


def _roadmap(area, lines=(LINE,), widths=(3.0,)):
    from genneg.domains.traffic.map import RoadMap

    return RoadMap(area, list(lines), widths)


# ------------------------------------------------------------------------- lazy imports of the domain modules
def _offroad(boxes, area, tolerance=0.3):
    from genneg.oracles.traffic import offroad

    return offroad(boxes, None, area, tolerance)


def _read_sumo(path):
    from genneg.domains.traffic.map import read_sumo_net

    return read_sumo_net(path)


def _read_lanelet2(path):
    from genneg.domains.traffic.map import read_lanelet2_map

    return read_lanelet2_map(path)


def _read_tracks(path):
    from genneg.domains.traffic.data.interaction import read_tracks

    return read_tracks(path)


def _load_interaction(tracks, map_file):
    from genneg.domains.traffic.data.interaction import load_interaction

    return load_interaction(tracks, map_file)


def _load_scenes(folder, split):
    from genneg.domains.traffic.data.store import load_scenes

    return load_scenes(folder, split)


def _read_manifest(folder):
    from genneg.domains.traffic.data.store import read_manifest

    return read_manifest(folder)


def _read_scenes_json(path):
    from genneg.domains.traffic.export import read_scenes_json

    return read_scenes_json(path)


def _sumo_home():
    from genneg.domains.traffic.data.sumo import sumo_home

    return sumo_home()


# ---------------------------------------------------------------------------------------------------- the table
CASES: list[Bad] = [
    # --- traffic oracles: boxes and drivable areas
    *[
        Bad(f"boxes: {name}",
            (lambda b, d: lambda f: __import__("genneg.oracles.traffic").oracles.traffic.collision(b, d))(b, d),
            ValueError, m)
        for name, b, d, m in [
            ("2-D array", np.zeros((2, 5)), None, r"\[B, N, 5\]"),
            ("4 fields", np.zeros((1, 2, 4)), None, r"\[B, N, 5\]"),
            ("empty batch", np.zeros((0, 3, 5)), None, "no scene"),
            ("empty scene", np.zeros((2, 0, 5)), None, "no vehicle slot"),
            ("no defined vehicle", _boxes(CAR), np.array([[False]]), "no defined vehicle"),
            ("NaN", _boxes(CAR, (NAN, 0, 0, 4, 2)), None, "NaN or inf"),
            ("inf", _boxes(CAR, (0, INF, 0, 4, 2)), None, "NaN or inf"),
            ("zero length", _boxes(CAR, (5, 0, 0, 0.0, 2)), None, "non-positive length or width"),
            ("negative width", _boxes(CAR, (5, 0, 0, 4, -2)), None, "non-positive length or width"),
            ("mask of wrong shape", _boxes(CAR), np.array([True, False]), "defined must have shape"),
            ("mask not boolean", _boxes(CAR, CAR), np.array([[0.5, 1.0]]), "boolean mask"),
            ("text", np.full((1, 2, 5), "x"), None, "numeric array"),
        ]
    ],
    Bad("offroad self-intersecting area", lambda f: _offroad(_boxes(CAR), BOW_TIE), ValueError, "Self-intersection"),
    Bad("offroad area without area", lambda f: _offroad(_boxes(CAR), shapely.LineString(LINE)), ValueError,
        "without area"),
    Bad("offroad area count", lambda f: _offroad(_boxes(CAR), [ROAD, ROAD]), ValueError, "one geometry or 1"),
    Bad("offroad area not a geometry", lambda f: _offroad(_boxes(CAR), ["road"]), ValueError, "Shapely geometries"),
    Bad("offroad NaN tolerance", lambda f: _offroad(_boxes(CAR), ROAD, tolerance=NAN), ValueError, "tolerance"),
    Bad("traffic oracle without boxes", lambda f: get_oracle("traffic:scene")({"defined": np.ones((1, 1), bool)}),
        KeyError, "boxes"),
    Bad("traffic oracle without area", lambda f: get_oracle("traffic:offroad")({"boxes": _boxes(CAR)}), KeyError,
        "drivable_area"),
    # --- road maps
    Bad("road map self-intersecting", lambda f: _roadmap(BOW_TIE), ValueError, "Self-intersection"),
    Bad("road map line as area", lambda f: _roadmap(shapely.LineString(LINE)), ValueError, "without area"),
    Bad("road map empty area", lambda f: _roadmap(shapely.Polygon()), ValueError, "non-empty"),
    Bad("road map NaN centreline", lambda f: _roadmap(ROAD, [np.array([[0.0, 0.0], [NAN, 1.0]])]), ValueError,
        "centreline 0 must be a finite"),
    Bad("road map one-point centreline", lambda f: _roadmap(ROAD, [np.zeros((1, 2))]), ValueError, "K >= 2"),
    Bad("road map zero width", lambda f: _roadmap(ROAD, widths=(0.0,)), ValueError, "widths must be finite and > 0"),
    Bad("road map no lanes", lambda f: _roadmap(ROAD, [], []), ValueError, ">= 1 centreline"),
    Bad("road map crop radius 0", lambda f: _roadmap(ROAD).crop((0, 0), 0.0, 0.0, 5, 4), ValueError, "radius > 0"),
    Bad("road map crop NaN centre", lambda f: _roadmap(ROAD).crop((NAN, 0), 0.0, 10.0, 5, 4), ValueError, "finite"),
    # --- SUMO networks
    *file_cases("SUMO net", _read_sumo, [
        ("missing", "no_such.net.xml", FileNotFoundError, "map file not found"),
        ("empty", "empty.net.xml", ValueError, "map file is empty"),
        ("truncated", "trunc.net.xml", ValueError, "trunc.net.xml is not a readable SUMO network"),
        ("truncated gzip", "trunc.net.xml.gz", ValueError, "not a readable SUMO network"),
        ("binary garbage", "garbage.net.xml", ValueError, "not a readable SUMO network"),
        ("of routes, not roads", "routes.net.xml", ValueError, "no lane allows vehicle class"),
    ]),
    # --- lanelet2 maps
    *file_cases("lanelet2 map", _read_lanelet2, [
        ("missing", "no_such.osm", FileNotFoundError, "map file not found"),
        ("empty", "empty.txt", ValueError, "map file is empty"),
        ("truncated", "trunc.osm", ValueError, "trunc.osm is not a readable lanelet2 map"),
        ("binary garbage", "garbage.osm", ValueError, "not a readable lanelet2 map"),
        ("without lanelets", "nolanelet.osm", ValueError, "no drivable lanelet"),
    ]),
    # --- INTERACTION tracks
    *file_cases("INTERACTION tracks", _read_tracks, [
        ("missing", "no_such.csv", FileNotFoundError, "track file not found"),
        ("empty", "empty.txt", ValueError, "not an INTERACTION vehicle track file"),
        ("wrong header", "tracks_header.csv", ValueError, "not an INTERACTION vehicle track file"),
        ("header only", "tracks_only_header.csv", ValueError, "no rows"),
        ("truncated row", "tracks_short_row.csv", ValueError, "malformed row"),
        ("text in a number column", "tracks_text.csv", ValueError, "malformed row"),
        ("NaN", "tracks_nan.csv", ValueError, "NaN or inf"),
        ("negative length", "tracks_neg.csv", ValueError, "non-positive length or width"),
        ("binary", "tracks_binary.csv", ValueError, "not a readable CSV"),
    ]),
    Bad("INTERACTION without track files", lambda f: _load_interaction([], f.path("nolanelet.osm")), ValueError,
        "at least one"),
    # --- traffic scene data and exports
    Bad("traffic scenes truncated", lambda f: _load_scenes(f.path("scenes"), "train"), ValueError,
        "train-a.scenes.npz is not a readable"),
    Bad("traffic scenes lacking arrays", lambda f: _load_scenes(f.path("scenes"), "val"), ValueError, "lacks"),
    Bad("traffic scenes missing network", lambda f: _load_scenes(f.path("scenes"), "test"), FileNotFoundError,
        "test-a.scenes.npz"),
    Bad("traffic scenes unknown split", lambda f: _load_scenes(f.path("scenes"), "dev"), ValueError, "unknown split"),
    Bad("traffic manifest truncated", lambda f: _read_manifest(f.path("scenes_bad")), ValueError, "truncated"),
    Bad("traffic scene JSON truncated", lambda f: _read_scenes_json(f.path("trunc.json")), ValueError, "truncated"),
    Bad("traffic scene JSON a list", lambda f: _read_scenes_json(f.path("scenes_list.json")), ValueError,
        "not a genneg traffic scene file"),
    Bad("traffic scene JSON other format", lambda f: _read_scenes_json(f.path("scenes_other.json")), ValueError,
        "not a genneg traffic scene file"),
    Bad("traffic scene JSON missing", lambda f: _read_scenes_json(f.path("nope.json")), FileNotFoundError,
        "nope.json"),
    Bad("traffic unknown data preset", lambda f: _traffic(preset="huge"), ValueError, "unknown SUMO data preset"),
    Bad("traffic map_lines out of range", lambda f: _traffic(preset="tiny", map_lines=0), ValueError, "map_lines"),
    Bad("traffic max_vehicles 0", lambda f: _traffic(preset="tiny", max_vehicles=0), ValueError, "max_vehicles"),
    # --- missing optional extras: the error names the extra to install
    Bad("no sumolib", without(["sumolib"], lambda f: _read_sumo(f.path("ok.net.xml"))), ImportError,
        r"genneg\[traffic\]"),
    Bad("no lanelet2", without(["lanelet2", "lanelet2.projection"], lambda f: _read_lanelet2(f.path("trunc.osm"))),
        ImportError, r"genneg\[traffic\]"),
    Bad("no SUMO", without(["sumo"], lambda f: _sumo_home()), ImportError, r"genneg\[traffic\]"),
    Bad("no shapely for the traffic domain",
        without(["shapely"], lambda f: get_domain("traffic"),
                fresh=("genneg.domains.traffic", "genneg.oracles.traffic")),
        ModuleNotFoundError, r"needs the module 'shapely'.*genneg\[traffic\]"),
]


# ---------------------------------------------------------------------------------------------------- the tests
class TestTrafficBadInputs(BadInputTable):
    cases = CASES
    writers = (write_traffic_files,)

    def test_valid_files_of_the_same_kinds_are_accepted(self, files):
        """The readers above refuse the bad files, not every file: the good twins load."""
        from genneg.domains.traffic.map import read_sumo_net

        assert read_sumo_net(files.path("ok.net.xml")).drivable_area.area > 0
        assert _roadmap(ROAD).drivable_area.area == 1000
