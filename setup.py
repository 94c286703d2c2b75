"""The wheel's packages: reference, implementations and conformance (every subpackage, so a
new loss family's folder is found), and the golden fixtures of fixtures/ as package data
``conformance.golden`` (pyproject.toml alone cannot map a folder outside the packages into
one). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["reference*", "implementations*", "conformance*"]) + ["conformance.golden"],
    package_dir={"conformance.golden": "fixtures"},
    package_data={"conformance.golden": ["*.npz", "*.json", "*.md"], "reference": ["*.md", "spec/*.md"]},
)
