"""Images far larger than the model input: reading them lazily, cutting them into overlapping
tiles, merging the tiles' detections into whole objects, and writing results a slide viewer or a
GIS opens."""
