"""Checks between resources (references, duplicates) once every document is parsed; the
loader runs them. Import ``check_references`` from ``mesh_model.validate.references``."""
