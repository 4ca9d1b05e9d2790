"""The model: registries, backbones, proposal generators, ROI heads and meta-architectures."""
