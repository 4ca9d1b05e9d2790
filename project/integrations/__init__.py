"""Bridges to other toolkits, each imported only on request.

- ``project.integrations.detectron2``: this project's model, datasets and mapper in
  Detectron2's registries and tools, and config conversion both ways (needs Detectron2).

Importing ``project`` or this package imports none of those toolkits.
"""
