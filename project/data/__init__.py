"""Datasets: registration, loading, mapping to model inputs, and batching."""
from .catalog import DatasetCatalog, Metadata, MetadataCatalog

__all__ = ["DatasetCatalog", "Metadata", "MetadataCatalog"]
