"""MkDocs hook: the API reference of a package face, generated from what the face exports.

A reference page holds a line ``<!-- reference: kernels -->``; this hook replaces it, before the Markdown is
converted, with one mkdocstrings block (``::: kernels.analytic.networks.FullyConnected``) per public name of the
face (its ``__all__``), grouped under one heading per defining module, in the order of ``__all__``'s modules. The
faces of ``kernels`` and ``nets`` export their names lazily (``_lazykit.exports``), which static analysis cannot
follow: the defining module comes from the face's ``_EXPORTS`` table, else from the object's ``__module__``
(classes and functions), else from the face's own source (constants, documented where the face defines them).
So a name added to a face appears in the reference without editing a page, and a name that cannot be found
fails the build.
"""
from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

DIRECTIVE = re.compile(r"^<!-- reference: ([\w.]+) -->$", flags=re.M)


def defining_module(face, name: str) -> str:
    """The module that defines ``face.name`` (``face.__name__`` itself for its own constants)."""
    exports = getattr(face, "_EXPORTS", None)
    if exports is not None:
        return f"{face.__name__}.{exports[name]}"
    obj = getattr(face, name)
    module = getattr(obj, "__module__", None) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
    if module is not None:
        return module
    for submodule in sorted(m for m in _submodules(face)):
        source = inspect.getsource(importlib.import_module(submodule))
        if re.search(rf"^{re.escape(name)}\s*(:[^=\n]*)?=", source, flags=re.M):
            return submodule
    raise LookupError(f"{face.__name__}.{name}: no module of {face.__name__} assigns it")


def _submodules(face):
    import pkgutil
    paths = getattr(face, "__path__", None)
    if paths is None:
        return [face.__name__]
    return [face.__name__] + [f"{face.__name__}.{info.name}" for info in pkgutil.iter_modules(paths)
                              if not info.name.startswith("_")]      # never __main__: importing it runs it


def reference(face_name: str) -> str:
    """The Markdown that documents every name of ``face_name.__all__``."""
    face = importlib.import_module(face_name)
    # a lazy face's table is in topic order (its __all__ is sorted by name)
    names = list(getattr(face, "_EXPORTS", None) or getattr(face, "__all__", None) or ())
    if not names:
        raise LookupError(f"{face_name} has no __all__: nothing to document")
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(defining_module(face, name), []).append(name)
    parts = []
    for module, members in groups.items():
        parts += [f"::: {module}", "    options:", f"      heading: \"{module}\"", "      members: false",
                  "      heading_level: 2", ""]
        for name in members:
            parts += [f"::: {module}.{name}", "    options:", f"      heading: \"{face_name}.{name}\"",
                      f"      toc_label: \"{name}\"", "      heading_level: 3", ""]
    return "\n".join(parts)


def on_config(config):
    """Import the faces from the folders mkdocstrings reads (its python handler's ``paths``, relative to
    mkdocs.yml), ahead of any installed copy, so that the page and the rendered docstrings describe one tree."""
    root = Path(config.config_file_path).resolve().parent
    plugin = config.plugins.get("mkdocstrings")
    handler = ((plugin.config.get("handlers") or {}).get("python") or {}) if plugin is not None else {}
    for path in reversed(handler.get("paths") or ["."]):
        folder = str((root / path).resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return config


def on_page_markdown(markdown, page, config, files):
    """Expand every ``<!-- reference: FACE -->`` line of a page."""
    return DIRECTIVE.sub(lambda m: reference(m.group(1)), markdown)
