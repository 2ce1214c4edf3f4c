"""Packaging beyond what pyproject.toml can say: the kernel profiles in the
top-level ``profiles/`` directory ship inside the package as
``armvmi_cli/profiles`` (package data), so an installed armvmi finds them
without a checkout beside it."""

from setuptools import find_namespace_packages, setup

setup(
    # namespace packages too (armvmi_cli.symbols has no __init__.py), as pyproject's packages.find did
    packages=find_namespace_packages(include=["armvmi_cli", "armvmi_cli.*"]) + ["armvmi_cli.profiles"],
    package_dir={"armvmi_cli.profiles": "profiles"},
    package_data={"armvmi_cli.profiles": ["*/*"]},
)
