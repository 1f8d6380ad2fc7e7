"""Reading model files and folders within the limits of one load.

Which files (folders recursively, sorted, hidden names skipped), each real file once, only
regular files, sizes checked before and while reading, UTF-8 decoded. Texts handed over
directly (``load_texts``) get the same size and decoding checks. Problems become ``Issue``s;
nothing here raises on bad input.
"""
from __future__ import annotations

import os
import stat
from typing import Any, Iterator, Sequence

from mesh_model.errors import Issue
from mesh_model.load.input_limits import Budget, Limits, size_text
from mesh_model.spec.pydantic_errors import describe

# what a folder load reads: YAML/JSON documents, and Terraform files (one module per load)
SUFFIXES = (".yaml", ".yml", ".json", ".tf")


def read_files(paths: Sequence[str | os.PathLike], issues: list[Issue], budget: Budget,
               decoded: dict[str, tuple[bytes, str]] | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(path, text)`` for every input file, each real file once.

    ``decoded`` (kept by a caller that reads the same files again and again): each file's
    last bytes and text; a file whose bytes did not change gives back the very same text
    object without decoding it again."""
    seen: set[str] = set()
    limits = budget.limits
    for path in paths:
        for file in _expand(os.fspath(path), issues, limits):
            real = os.path.realpath(file)
            if real in seen:
                continue
            seen.add(real)
            budget.files += 1
            if budget.files > limits.max_files:
                issues.append(Issue(file, "", "", f"more than {limits.max_files:,} files to load (limit per load); not read"))
                budget.stopped = True
                return
            text = _read_text(file, issues, budget, decoded)
            if budget.stopped:
                return
            if text is not None:
                yield file, text


def model_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The files a load of ``paths`` reads, in its order (what a watcher must watch);
    paths that are missing or unreadable are left out (the load reports them)."""
    found: list[str] = []
    for path in paths:
        found += _expand(os.fspath(path), [], Limits())
    return found


def _expand(path: str, issues: list[Issue], limits: Limits) -> list[str]:
    """A file as is; a folder as its resource files, recursively, sorted by path.

    Names starting with ``.`` are skipped: editor temp files, ``.git``, and the
    ``..data``/``..2024_...`` twins in Kubernetes ConfigMap volume mounts (which would
    otherwise load every resource twice). A sub-folder that cannot be listed is an
    error (silently skipping it would drop its resources from the served model).
    """
    try:
        if os.path.isfile(path):
            return [path]
        if not os.path.isdir(path):
            issues.append(Issue(path, "", "", "no such file or directory"))
            return []
    except (ValueError, OSError) as err:  # e.g. a NUL byte in the path
        issues.append(Issue(path, "", "", f"invalid path: {err}"))
        return []

    def unreadable(err: OSError) -> None:
        issues.append(Issue(err.filename or path, "", "", f"cannot read folder: {err.strerror or err}"))

    found: list[str] = []
    for folder, dirs, files in os.walk(path, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(folder, f) for f in files if f.endswith(SUFFIXES) and not f.startswith(".")]
        if len(found) > limits.max_files:
            break  # read_files reports the limit
    return sorted(found)


def _read_text(file: str, issues: list[Issue], budget: Budget, decoded: dict[str, tuple[bytes, str]] | None = None) -> str | None:
    """The file's text, or None (with an issue) when it cannot or must not be read.

    Opened non-blocking and checked to be a regular file: a FIFO or device named
    ``*.yaml`` would otherwise hang or never end. Size is checked before and while reading.
    """
    limits = budget.limits
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                issues.append(Issue(file, "", "", "not a regular file"))
                return None
            if info.st_size > limits.max_file_bytes:
                issues.append(Issue(file, "", "", _too_big(info.st_size, limits.max_file_bytes)))
                return None
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as err:
        issues.append(Issue(file, "", "", f"cannot read: {err.strerror or err}"))
        return None
    if len(data) > limits.max_file_bytes:  # grew since fstat
        issues.append(Issue(file, "", "", _too_big(len(data), limits.max_file_bytes)))
        return None
    if not _count_bytes(file, len(data), issues, budget):
        return None
    known = decoded.get(file) if decoded is not None else None
    if known is not None and known[0] == data:
        return known[1]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        issues.append(Issue(file, "", "", f"not UTF-8 text (byte {err.start})"))
        return None
    if decoded is not None:
        decoded[file] = (data, text)
    return text


def _too_big(size: int, limit: int) -> str:
    return f"file is {size_text(size)}, larger than the limit of {size_text(limit)}"


def _count_bytes(label: str, size: int, issues: list[Issue], budget: Budget) -> bool:
    limit = budget.limits.max_total_bytes
    budget.bytes += size
    if budget.bytes > limit:
        issues.append(Issue(label, "", "", f"the files add up to more than {size_text(limit)} (limit per load); not read"))
        budget.stopped = True
        return False
    return True


def text_from_input(label: str, text: Any, issues: list[Issue], budget: Budget) -> str | None:
    """``load_texts`` input as checked text: same size limits and decoding as files, and
    no unpaired surrogates (not valid Unicode: YAML cannot read it, protobuf cannot send it)."""
    limits = budget.limits
    if isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
        if len(data) > limits.max_file_bytes:
            issues.append(Issue(label, "", "", _too_big(len(data), limits.max_file_bytes)))
            return None
        if not _count_bytes(label, len(data), issues, budget):
            return None
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            issues.append(Issue(label, "", "", f"not UTF-8 text (byte {err.start})"))
            return None
    if not isinstance(text, str):
        issues.append(Issue(label, "", "", f"expected text, got {describe(text)}"))
        return None
    if len(text) > limits.max_file_bytes:  # at least one byte per character
        issues.append(Issue(label, "", "", _too_big(len(text.encode("utf-8", "surrogatepass")), limits.max_file_bytes)))
        return None
    size = len(text)
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as err:
            line, column = line_column(text, err.start)
            issues.append(Issue(label, "", f"line {line} column {column}",
                                f"unpaired surrogate character U+{ord(text[err.start]):04X} (not valid Unicode text)"))
            return None
        if size > limits.max_file_bytes:
            issues.append(Issue(label, "", "", _too_big(size, limits.max_file_bytes)))
            return None
    if not _count_bytes(label, size, issues, budget):
        return None
    return text[1:] if text.startswith("\ufeff") else text


def line_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of character ``index``."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1
