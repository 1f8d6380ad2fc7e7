"""Loading the model: files, folders, texts or parsed documents -> a validated ``MeshModel``.

Import ``load_paths``, ``load_texts``, ``load_documents``, ``ParseCache`` and ``DocumentCache`` from here
(``Limits`` from ``input_limits``); the other modules are the pipeline's inner steps.
"""
from mesh_model.load.files import SUFFIXES as MODEL_FILE_SUFFIXES  # what a folder load reads (and a watcher watches)
from mesh_model.load.parse_cache import DocumentCache, ParseCache
from mesh_model.load.build import combined_model
from mesh_model.load.pipeline import load_documents, load_paths, load_texts

__all__ = ["DocumentCache", "combined_model", "MODEL_FILE_SUFFIXES", "ParseCache", "load_documents", "load_paths", "load_texts"]
