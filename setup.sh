#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with the project (editable) and its
# pinned dependencies, torch 2.14.1 and torchvision 0.29.1 among them.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/python -c "import torch, torchvision.ops; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
