"""``install()``: makes ``diff_surfel_rasterization``, ``simple_knn`` and ``simple_knn._C`` import
gsplat_lib's replacements in this process.

It registers them in ``sys.modules``, which Python's import consults before any installed
package, so the replacements win over an installed upstream extension whenever install() has
run (``gsplat-compat`` runs it first); without install(), Python imports the installed one as
usual. When an upstream package is also installed, or was imported already, it says so.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from typing import Dict, List

__all__ = ["ALIASES", "UpstreamShadowedWarning", "install"]

ALIASES: Dict[str, str] = {
    "diff_surfel_rasterization": "gsplat_lib.compat.diff_surfel_rasterization",
    "simple_knn": "gsplat_lib.compat.simple_knn",
    "simple_knn._C": "gsplat_lib.compat.simple_knn._C",
}


class UpstreamShadowedWarning(UserWarning):
    """An upstream package is installed (or imported) too; gsplat_lib's replacement is used."""


def install() -> List[str]:
    """Registers the replacements; returns the notes about upstream packages it shadows (also
    issued as an ``UpstreamShadowedWarning``). Calling it again changes nothing."""
    notes = []
    for name, target in ALIASES.items():
        replacement = importlib.import_module(target)
        present = sys.modules.get(name)
        if present is not None and present is not replacement:
            notes.append(f"{name} was already imported from {getattr(present, '__file__', None) or present!r}; "
                         "code that imported it before install() keeps that module")
        elif present is None and "." not in name:
            spec = importlib.machinery.PathFinder.find_spec(name)
            if spec is not None:
                where = spec.origin or ", ".join(spec.submodule_search_locations or [])
                notes.append(f"{name} is also installed ({where}); this process uses gsplat_lib's replacement "
                             f"({target}); run without gsplat-compat / install() to use the installed one")
        sys.modules[name] = replacement
    for note in notes:
        warnings.warn(f"gsplat_lib.compat: {note}", UpstreamShadowedWarning, stacklevel=2)
    return notes
