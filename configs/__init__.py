"""The Hydra config tree, shipped inside the package as ``project.configs`` (see setup.py)."""
