"""Road maps: SUMO reader on a tiny netgenerate network, lanelet2 reader on a map the test writes, crops, errors."""

import gzip
import subprocess

import numpy as np
import pytest

shapely = pytest.importorskip("shapely")

from genneg.domains.traffic.map import RoadMap, read_lanelet2_map, read_sumo_net, to_scene_frame  # noqa: E402
from traffic_fixtures import write_lanelet2_map  # noqa: E402


@pytest.fixture(scope="module")
def grid_net(tmp_path_factory):
    sumo = pytest.importorskip("sumo")
    pytest.importorskip("sumolib")
    path = tmp_path_factory.mktemp("net") / "grid.net.xml"
    subprocess.run([f"{sumo.SUMO_HOME}/bin/netgenerate", "--grid", "--grid.number", "2", "--grid.length", "100",
                    "--default.lanenumber", "2", "--turn-lanes", "1", "-j", "traffic_light", "-o", str(path)],
                   check=True, capture_output=True)
    return path


def test_sumo_reader_area_and_centrelines(grid_net):
    road = read_sumo_net(grid_net)
    assert len(road.lines) > 8 and road.widths.min() > 2.0
    assert shapely.length(road.lines).min() > 0
    mids = shapely.line_interpolate_point(road.lines, 0.5, normalized=True)
    assert shapely.contains(road.drivable_area, mids).all()  # every lane (internal ones too) lies on the road
    xmin, ymin, xmax, ymax = road.bounds
    assert xmax - xmin > 100 and ymax - ymin > 100
    assert not road.drivable_area.contains(shapely.Point(50, 50))  # middle of a grid block is off the road
    assert road.drivable_area.contains(shapely.Point(0, 0))  # a junction (junction polygons are unioned in)


def test_sumo_reader_reads_gzip_and_keeps_internal_lanes(grid_net, tmp_path):
    gz = tmp_path / "grid.net.xml.gz"
    gz.write_bytes(gzip.compress(grid_net.read_bytes()))
    a, b = read_sumo_net(grid_net), read_sumo_net(gz)
    assert len(a.lines) == len(b.lines) and a.drivable_area.equals(b.drivable_area)
    import sumolib

    net = sumolib.net.readNet(str(grid_net), withInternal=True)
    internal = [lane for e in net.getEdges(withInternal=True) if e.getFunction() == "internal" for lane in e.getLanes()]
    assert internal and len(a.lines) >= len(internal)


def test_crop_in_scene_frame(grid_net):
    road = read_sumo_net(grid_net)
    centre, yaw, radius = np.array([50.0, -1.6]), 0.0, 55.0  # on the lower horizontal road, facing +x
    crop = road.crop(centre, yaw, radius, num_points=10, max_lines=128)
    assert crop.polylines.shape == (128, 10, 6) and crop.defined.shape == (128,)
    lines = crop.polylines[crop.defined]
    assert len(lines) >= 2 and not crop.polylines[~crop.defined].any()
    seg_len = np.linalg.norm(np.diff(lines[..., :2], axis=1), axis=-1).sum(1)
    assert seg_len.max() <= 20.0 + 1e-3  # cut into segments of at most 20 m
    near = np.linalg.norm(lines[..., :2], axis=-1).min(1)  # every segment reaches into the disc (point spacing slack)
    assert near.max() <= radius + 20.0 / 9 + 1e-3 and (np.diff(near) > -20.0 / 9).all()  # nearest first
    np.testing.assert_allclose(np.linalg.norm(lines[..., 2:4], axis=-1), 1.0, atol=1e-5)
    travel = np.sign(lines[:, -1, 0] - lines[:, 0, 0])  # straight lanes: tangent agrees with point order
    straight = np.abs(lines[:, :, 3]).max(1) < 1e-3
    np.testing.assert_array_equal(np.sign(lines[straight, 0, 2]), travel[straight])
    assert {1.0, -1.0} <= set(travel[straight])  # both directions of a two-way road
    assert {0.0, 1.0} == set(lines[..., 5].ravel())  # junction-internal segments are flagged
    assert crop.drivable_area.contains(shapely.Point(0, 0))
    rotated = road.crop(centre, np.pi / 2, radius, 10, 128)  # same place, frame turned: x -> -y
    np.testing.assert_allclose(rotated.drivable_area.area, crop.drivable_area.area, rtol=1e-9)
    np.testing.assert_allclose(to_scene_frame([[1.0, 0.0]], [0.0, 0.0], np.pi / 2), [[0.0, -1.0]], atol=1e-12)
    far = road.crop([1e4, 1e4], 0.0, radius, 10, 16)
    assert not far.defined.any() and far.drivable_area.is_empty


def test_crop_by_coverage_keeps_every_lane_near_the_centre(grid_net):
    """Every lane within the radius is seen (no count budget used up by junction lanes) unless the maximum cuts it."""
    from genneg.domains.traffic.map import select_segments

    road = read_sumo_net(grid_net)
    segs = road.segments(20.0, 5)
    rng = np.random.default_rng(0)
    centres = rng.uniform(road.bounds[:2], road.bounds[2:], (200, 2))
    idx, dropped = select_segments(segs, centres, 25.0, 256)
    assert not dropped.any()
    for c, row in zip(centres[:40], idx[:40]):
        near = shapely.dwithin(road.lines, shapely.Point(c), 25.0)  # lanes within reach
        seen = shapely.union_all(segs.lines[row[row >= 0]])
        assert shapely.distance(shapely.Point(c), shapely.intersection(road.lines[near], seen.buffer(1e-6))).max() \
            <= 25.0 + 1e-6 if near.any() else (row < 0).all()
    small, dropped = select_segments(segs, centres, 25.0, 4)
    np.testing.assert_array_equal(small, idx[:, :4])  # the maximum keeps the nearest
    assert (dropped == np.maximum((idx >= 0).sum(1) - 4, 0)).all()


@pytest.mark.parametrize("content, error", [(None, FileNotFoundError), (b"", ValueError),
                                            (b"<net><edge id='a'", ValueError), (b"not xml at all", ValueError),
                                            (b"<net></net>", ValueError)])
def test_sumo_reader_errors(grid_net, tmp_path, content, error):
    path = tmp_path / "bad.net.xml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match="bad.net.xml"):
        read_sumo_net(path)


def test_sumo_reader_truncated_gzip(grid_net, tmp_path):
    gz = tmp_path / "cut.net.xml.gz"
    gz.write_bytes(gzip.compress(grid_net.read_bytes())[:2000])
    with pytest.raises(ValueError, match="cut.net.xml.gz"):
        read_sumo_net(gz)


def test_lanelet2_reader(tmp_path):
    pytest.importorskip("lanelet2")
    road = read_lanelet2_map(write_lanelet2_map(tmp_path / "road.osm"))
    assert len(road.lines) == 2  # the crosswalk is not drivable
    assert road.drivable_area.area == pytest.approx(700.0, rel=1e-4)
    np.testing.assert_allclose(road.widths, 3.5, rtol=1e-4)
    assert not road.drivable_area.contains(shapely.Point(62, 10))
    crop = road.crop([50.0, 1.75], 0.0, 20.0, num_points=5, max_lines=8)
    lines = crop.polylines[crop.defined]
    assert len(lines) == 6  # 100 m lanes in 20 m segments: 3 per lane reach within 20 m of x = 50
    assert sorted(np.round(lines[:, 0, 2]).tolist()) == [-1.0] * 3 + [1.0] * 3  # one lane each way
    east = lines[0]  # nearest first: the east lane's segment under the centre
    np.testing.assert_allclose(east[:, 1], 0.0, atol=1e-4)  # the centre sits on the east lane's centreline
    np.testing.assert_allclose(east[[0, -1], 0], [-10, 10], atol=1e-3)


def test_lanelet2_reader_errors(tmp_path):
    pytest.importorskip("lanelet2")
    with pytest.raises(FileNotFoundError, match="missing.osm"):
        read_lanelet2_map(tmp_path / "missing.osm")
    bad = tmp_path / "bad.osm"
    bad.write_text("<osm version='0.6'><node id='1' lat='0' lon='0'/>")
    with pytest.raises(ValueError, match="bad.osm"):
        read_lanelet2_map(bad)
    good = write_lanelet2_map(tmp_path / "road.osm").read_text()
    cut = tmp_path / "cut.osm"
    cut.write_text(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cut.osm"):
        read_lanelet2_map(cut)


def test_roadmap_validates_inputs():
    area = shapely.box(0, 0, 10, 10)
    with pytest.raises(ValueError, match="non-empty"):
        RoadMap(shapely.Polygon(), [np.zeros((2, 2))], [3.0])
    with pytest.raises(ValueError, match="one width per centreline"):
        RoadMap(area, [np.zeros((2, 2))], [3.0, 3.0])
    with pytest.raises(ValueError, match="widths must be finite"):
        RoadMap(area, [np.zeros((2, 2))], [0.0])
    with pytest.raises(ValueError, match="centreline 0"):
        RoadMap(area, [np.zeros((1, 2))], [3.0])
    road = RoadMap(area, [np.array([[0.0, 5.0], [10.0, 5.0]])], [3.0])
    with pytest.raises(ValueError, match="radius > 0"):
        road.crop([5, 5], 0.0, -1.0, 10, 4)
