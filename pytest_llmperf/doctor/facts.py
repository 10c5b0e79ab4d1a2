"""A machine fact's shape: known (a value for machines, words for people) or "unknown (why)"."""

from __future__ import annotations

from typing import Any


def fact(value: Any, text: str) -> dict[str, Any]:
    """A known fact: its value for machines, its words for people."""
    return {"value": value, "text": text}


def unknown(why: str) -> dict[str, Any]:
    """A fact that could not be read, with the reason (a missing file is not an error)."""
    return {"value": None, "text": f"unknown ({why})"}
