"""Traffic scenes: road maps (SUMO, lanelet2), scene data (SUMO simulation, INTERACTION), later the scene model."""
