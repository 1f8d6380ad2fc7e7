"""Reading model files: files and folders -> parsed documents -> a validated MeshModel.

The public entry points are here; the other modules of this package are its inner steps.
"""
from mesh_model.load.loader import ParseCache, load_paths, load_texts

__all__ = ["ParseCache", "load_paths", "load_texts"]
