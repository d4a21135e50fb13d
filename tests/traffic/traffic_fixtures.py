"""Fixtures written by the traffic tests (nothing is downloaded)."""

import torch

B, N, L, P = 3, 5, 4, 6


def batch(seed=0):
    """A small scene batch for the networks: (x [B, N, 6], c_noise [B], cond) with padded vehicle slots and map
    lines."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, 6, generator=g)
    defined = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    cond = {"ego": torch.randn(B, 6, generator=g), "defined": defined, "map": torch.randn(B, L, P, 6, generator=g),
            "map_defined": torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)}
    return x, torch.randn(B, generator=g), cond


def write_lanelet2_map(path, crosswalk=True):
    """Two parallel 3.5 m lanes along +x over 100 m, one each way, plus a crosswalk that is not drivable."""
    from lanelet2.core import Lanelet, LaneletMap, LineString3d, Point3d, getId
    from lanelet2.io import Origin, write
    from lanelet2.projection import UtmProjector

    def line(*pts):
        return LineString3d(getId(), [Point3d(getId(), x, y, 0.0) for x, y in pts])

    y0, y1, y2 = line((0, 0), (50, 0), (100, 0)), line((0, 3.5), (50, 3.5), (100, 3.5)), line((0, 7), (100, 7))
    east = Lanelet(getId(), y1, y0)  # left bound, right bound: driving direction +x
    west = Lanelet(getId(), y1.invert(), y2.invert())  # driving direction -x
    lmap = LaneletMap()
    for ll in (east, west):
        ll.attributes["subtype"] = "road"
        lmap.add(ll)
    if crosswalk:
        cw = Lanelet(getId(), line((60, -5), (60, 12)), line((64, -5), (64, 12)))
        cw.attributes["subtype"] = "crosswalk"
        lmap.add(cw)
    write(str(path), lmap, UtmProjector(Origin(0.0, 0.0)))
    return path
