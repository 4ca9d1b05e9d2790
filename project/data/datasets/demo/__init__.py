"""The demo datasets this project draws itself (``cells_demo``, ``road_demo``): deterministic
images with exact annotations, generated on first use and cached as COCO JSON."""
