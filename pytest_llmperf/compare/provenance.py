"""Where a worker's project code came from: each tree imports its own, and says so.

A comparison is only as good as its reference side: a reference worker that
imports the working tree's code measures the candidate against itself, and every
regression passes. Paths reach the candidate in more ways than can be listed
(``PYTHONPATH``, an ini's absolute ``pythonpath``, a ``.pth`` or an editable
install's import hook, a conftest that loads a file by path), so the reference
worker does two things:

- it *redirects*: every ``sys.path`` entry, and every module spec any finder
  returns, that lies in the candidate's tree is moved to the same relative path
  in the reference tree, where that path exists there;
- and, whatever did the import, it *checks*: every file of the other tree's
  project (the same path exists in this tree, or git tracks it there) whose
  code runs in the worker (an audit hook on ``exec``: imports, ``runpy``, a
  module loaded by its path) or that ``sys.modules`` holds (extension modules)
  is reported after collection and after each test. The controller turns any
  such file into that test's error, naming the module and both paths, never a
  pass.

The candidate worker runs the same check against the reference's worktree. The
plugin's own package is exempt: it is the measuring instrument, loaded once from
the environment so that both sides are measured alike.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

#: The plugin's top-level package: the instrument, shared by both sides on purpose.
PLUGIN_PACKAGE = __name__.partition(".")[0]
PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Trees:
    """This worker's tree (``own``) and the other side's (``other``), as real paths."""

    def __init__(self, own: str | os.PathLike[str], other: str | os.PathLike[str]) -> None:
        self.own = _real(own)
        self.other = _real(other)
        self._tracked: set[str] | None = None

    def relative(self, path: str) -> str | None:
        """``path``'s place in the other tree; None when it is not in it (or is in this
        one: a reference worktree may live inside the candidate's directory)."""
        real = _real(path)
        if not _inside(real, self.other) or _inside(real, self.own):
            return None
        return os.path.relpath(real, self.other)

    def moved(self, path: str) -> str | None:
        """The same file in this tree, when ``path`` is in the other tree and this tree has
        it; None otherwise (a virtual environment inside the repository stays where it is)."""
        rel = self.relative(path)
        if rel is None:
            return None
        here = os.path.join(self.own, rel)
        return here if os.path.exists(here) else None

    def foreign(self, path: str) -> bool:
        """Whether ``path`` is the other tree's project code: this tree has the same file, or
        git tracks it in the other tree (a file this tree lacks, imported anyway)."""
        rel = self.relative(path)
        if rel is None:
            return False
        return os.path.exists(os.path.join(self.own, rel)) or rel in self._other_tracked()

    def _other_tracked(self) -> set[str]:
        if self._tracked is None:
            try:
                done = subprocess.run(
                    ["git", "ls-files", "-z", "--recurse-submodules"],
                    cwd=self.other,
                    capture_output=True,
                    check=False,
                )
                names = done.stdout.decode(errors="replace").split("\0")
            except OSError:
                names = []
            self._tracked = {os.path.normpath(n) for n in names if n}
        return self._tracked


def _module_files(module: ModuleType) -> list[str]:
    file = getattr(module, "__file__", None)
    if isinstance(file, str):
        return [file]
    path = getattr(module, "__path__", None)  # a namespace package: its directories
    with contextlib.suppress(TypeError):
        return [p for p in list(path or []) if isinstance(p, str)]
    return []


def _is_plugin(name: str) -> bool:
    return name.partition(".")[0] == PLUGIN_PACKAGE


class Provenance:
    """The other tree's files whose code this process ran, checked incrementally."""

    def __init__(self, trees: Trees) -> None:
        self.trees = trees
        self._names: set[str] = set()
        self._files: set[str] = set()
        #: the other tree's file -> the module it became (its path there when unknown)
        self._foreign: dict[str, str] = {}
        self._busy = False

    def watch(self) -> None:
        """Sees every code object executed from a file from now on: the ways code gets in
        without a module in ``sys.modules`` (``runpy``, ``exec_module`` of a bare spec)."""
        sys.addaudithook(self._audit)

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "exec" or not args or self._busy:
            return
        file = getattr(args[0], "co_filename", None)
        if not isinstance(file, str) or file in self._files:
            return
        self._files.add(file)
        # Never in the way of the code it watches: an error here would be the exec's, and
        # what this looks at may itself run code (the module then is in sys.modules).
        self._busy = True
        try:
            self._look_at(file, None)
        except Exception:
            self._files.discard(file)
        finally:
            self._busy = False

    def _look_at(self, file: str, name: str | None) -> bool:
        if not os.path.isabs(file) or _inside(_real(file), PLUGIN_DIR):
            return False
        if not self.trees.foreign(file):
            return False
        real = _real(file)
        self._foreign[real] = name or self._foreign.get(real) or self.trees.relative(real) or real
        return True

    def check(self, modules: dict[str, Any] | None = None) -> dict[str, str]:
        """Every file of the other tree run so far, as module name -> file (new modules are
        looked at once)."""
        modules = sys.modules if modules is None else modules
        for name, module in list(modules.items()):
            if name in self._names or module is None:
                continue
            self._names.add(name)
            if _is_plugin(name):
                continue
            for file in _module_files(module):
                if self._look_at(file, name):
                    break
        return {name: file for file, name in self._foreign.items()}


class Redirect(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` in the reference worker: asks the finders after it, and
    moves a spec that points into the candidate's tree to the reference's copy."""

    def __init__(self, trees: Trees) -> None:
        self.trees = trees
        self._busy = threading.local()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if _is_plugin(fullname) or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = _find_after(self, fullname, path, target)
        finally:
            self._busy.on = False
        if spec is None:
            return None
        return self._moved(fullname, spec) or spec

    def _moved(
        self, name: str, spec: importlib.machinery.ModuleSpec
    ) -> importlib.machinery.ModuleSpec | None:
        locations = spec.submodule_search_locations
        moved_locations = (
            [self.trees.moved(p) or p for p in locations] if locations is not None else None
        )
        if spec.origin and spec.has_location:
            origin = self.trees.moved(spec.origin)
            if origin is None:
                return None
            return importlib.util.spec_from_file_location(
                name, origin, submodule_search_locations=moved_locations
            )
        if moved_locations is not None and moved_locations != list(locations or []):
            namespace = importlib.machinery.ModuleSpec(name, None, is_package=True)
            namespace.submodule_search_locations = moved_locations
            return namespace
        return None


def _find_after(
    redirect: Redirect, name: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    for finder in list(sys.meta_path):
        if finder is redirect:
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(name, path, target)
        if spec is not None:
            return spec
    return None


def moved_paths(entries: Iterable[str], trees: Trees) -> list[str]:
    """``sys.path`` with each entry in the candidate's tree moved to the reference's copy."""
    return [(trees.moved(p) or p) if p else p for p in entries]


def install_redirect(trees: Trees) -> Redirect:
    """Moves ``sys.path`` and puts the redirecting finder first (the reference worker)."""
    sys.path[:] = moved_paths(sys.path, trees)
    sys.path_importer_cache.clear()
    redirect = Redirect(trees)
    sys.meta_path.insert(0, redirect)
    return redirect
