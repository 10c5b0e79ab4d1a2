"""Reading a baseline file: decoded, parsed and validated (:mod:`.checks`) before any
verdict reads it, so a corrupt, foreign or other project's file is an error that names
it, never a crash later or a gate that silently passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import MAX_PROJECT
from .checks import _Bad, _check_entry, _key, _show, _sweep
from .project import Project, other_project_error
from .schema import SCHEMA, SCHEMA_VERSION, BaselineError, BaselineFile


def _fail(path: Path, why: str) -> BaselineError:
    return BaselineError(
        f"llmperf: baseline file {path} {why}. It was left untouched; fix or delete it "
        f"(or point --llmperf-baselines elsewhere) and run again."
    )


def _validate(
    data: Any, path: Path, device_key: str | None, project: Project | None = None
) -> BaselineFile:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise _fail(path, f'is not a pytest-llmperf baseline (no "schema": "{SCHEMA}")')
    version = data.get("schema_version")
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version > SCHEMA_VERSION
        or version < 1
    ):
        raise _fail(
            path, f"has schema_version {version!r}; this plugin reads up to {SCHEMA_VERSION}"
        )
    device = data.get("device")
    tests = data.get("tests")
    if not isinstance(device, dict) or not isinstance(tests, dict):
        raise _fail(path, 'lacks a "device" object or a "tests" object')
    if not isinstance(device.get("key"), str):
        raise _fail(path, f"has a device key {_show(device.get('key'))}, expected a string")
    if device_key is not None and device.get("key") != device_key:
        raise _fail(
            path, f"belongs to device {device.get('key')!r}, not to this device {device_key!r}"
        )
    fingerprint = data.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise _fail(path, f"has a fingerprint that is {_show(fingerprint)}, not an object")
    recorded = data.get("project")
    if recorded is not None and (
        not isinstance(recorded, str) or not recorded.strip() or len(recorded) > MAX_PROJECT
    ):
        raise _fail(
            path,
            f"has a project {_show(recorded)}, expected the name of the project that wrote "
            f"it (a non-empty string of at most {MAX_PROJECT} characters)",
        )
    try:
        for key, x in data.items():
            if key != "tests":
                _sweep(x, _key("", key))
        for nodeid, entry in tests.items():
            _check_entry(nodeid, entry)
    except _Bad as exc:
        raise _fail(path, str(exc)) from None
    if recorded is not None and project is not None and not project.owns(recorded):
        raise other_project_error(path, recorded, project)
    return BaselineFile(path, device, fingerprint or {}, tests, recorded)


def load(
    path: Path, device_key: str | None = None, project: Project | None = None
) -> BaselineFile | None:
    """The baseline at ``path``, None if there is none; BaselineError if unusable, or if
    it names a project other than ``project`` (None: any project's file is read)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(
            path, f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise _fail(path, "is not valid JSON (nested too deeply to read)") from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise _fail(path, f"is not valid JSON ({exc})") from None
    return _validate(data, path, device_key, project)
