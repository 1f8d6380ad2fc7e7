"""Checks between resources (references, duplicates) once every document is parsed; the
loader runs them. Import ``check_references`` (one check) or ``ReferenceChecker`` (a model
checked again and again, at the cost of what changed) from ``mesh_model.validate.references``."""
