#!/usr/bin/env python
"""Run a model on images, folders, a video or a webcam and draw what it finds; see
``python demo.py --help`` (the same as ``python -m project.demo``)."""

import sys

from project.demo import main

if __name__ == "__main__":
    sys.exit(main())
