"""Package layout that pyproject.toml cannot express: the Hydra config tree lives at the top
of the repository (``configs/``, where ``train_net.py`` and users look for it) and ships inside
the package as ``project.configs``, so an installed wheel composes configs from any folder."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["project", "project.*"]) + ["project.configs"],
    package_dir={"project.configs": "configs"},
    package_data={"project.configs": ["*.yaml", "*/*.yaml"]},
)
