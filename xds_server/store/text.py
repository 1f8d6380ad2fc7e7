"""Client-chosen text as the SQL stores can hold it (SQLite and PostgreSQL refuse lone surrogates, PostgreSQL NUL)."""
from __future__ import annotations


def storable_text(value: str) -> str:
    """A client-chosen text (a ``clientToken``, its scope) as the SQL stores can hold it: as is
    when it is valid Unicode without NUL (every token botocore makes), else its JSON escape
    (``json:"\\ud800..."``), so an odd token is still one distinct key and never a driver error.
    (The API refuses such tokens already; this is the stores' own guard.)"""
    if "\x00" not in value:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
    import json

    return "json:" + json.dumps(value)
