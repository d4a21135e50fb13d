"""Package layout (docs/api.md, "Installed package names"): the folders domains/ and oracles/ install as
genneg.domains and genneg.oracles, so `genneg` is the only top-level name this project installs. Everything else
(metadata, dependencies, entry points, package data) is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

MAPPED = {"genneg.domains": "domains", "genneg.oracles": "oracles"}
EXCLUDE = ["*__pycache__*"]

packages = find_namespace_packages(include=["genneg", "genneg.*"], exclude=EXCLUDE)
for name, folder in MAPPED.items():
    packages += [name] + [f"{name}.{p}" for p in find_namespace_packages(where=folder, exclude=EXCLUDE)]

setup(packages=packages, package_dir=MAPPED)
