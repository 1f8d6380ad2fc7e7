"""Input limits of one load (``load_paths``/``load_texts``): hostile or broken input is
refused with a clear ``Issue`` instead of exhausting memory or CPU.

The defaults are generous: a model of 2,000 virtual nodes, 2,000 services, 2,000 routers
and a router with 500 routes uses a few percent of each. Every limit can be changed per
call: ``load_paths(paths, limits=Limits(max_file_bytes=64 * MiB))``.

What each limit protects against:

``max_file_bytes`` (16 MiB)
    one file; checked with ``stat`` before reading, and again while reading.
``max_total_bytes`` (256 MiB)
    all files of one load together.
``max_files`` (50,000)
    files found in the given folders.
``max_documents`` (100,000)
    YAML documents (empty ones and ``---`` floods included) and items of JSON lists,
    i.e. resources, over the whole load.
``max_nodes`` (5,000,000)
    YAML nodes / JSON values over the whole load, aliases expanded. Bytes alone do not
    bound the work: PyYAML composes ``[1,1,1,...]`` at ~4 microseconds a value, so a
    16 MiB file of it would take half a minute.
``max_document_nodes`` (200,000)
    YAML nodes / JSON values of one document (one resource), aliases expanded. This is
    the "billion laughs" guard: ``&a [x,x,...]``, ``&b [*a,*a,...]``... stays tiny on
    disk but expands exponentially. It also bounds the cost of validating one resource
    (every wrong item of a list is one error).
``max_depth`` (64)
    nesting of mappings/lists in one document (the deepest App Mesh spec is ~12).
``max_string_length`` (65,536 characters)
    any single string, key or value (App Mesh's longest fields are 1,024).
``max_issues`` (1,000)
    problems reported by one load; beyond it checking stops with a last issue saying so
    (a generated file with 100,000 wrong items would otherwise produce a huge error).

Independently of these limits, the loader refuses integers written with more than
``MAX_INT_DIGITS`` characters (Python refuses to convert numbers above 4,300 digits).
"""
from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024 * KiB

MAX_INT_DIGITS = 1000


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 16 * MiB
    max_total_bytes: int = 256 * MiB
    max_files: int = 50_000
    max_documents: int = 100_000
    max_nodes: int = 5_000_000
    max_document_nodes: int = 200_000
    max_depth: int = 64
    max_string_length: int = 64 * KiB
    max_issues: int = 1_000


DEFAULT_LIMITS = Limits()


def size_text(n: int) -> str:
    """``20.0 MiB``, ``16 MiB``, ``512 KiB``, ``1,500 bytes``: whole units when exact,
    one decimal otherwise, bytes below 10 KiB (``2.0 KiB`` for 2,000 bytes would mislead)."""
    for unit, size in (("GiB", 1024 * MiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size and (n % size == 0 or n >= 10 * KiB):
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n:,} byte{'s' if n != 1 else ''}"


class Budget:
    """What one load has used so far of its ``Limits`` (shared by reading and parsing)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0
        self.documents = 0
        self.nodes = 0
        self.stopped = False  # a per-load limit was hit: read nothing more
