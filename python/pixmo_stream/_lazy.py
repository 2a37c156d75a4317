"""Package names that load on first use: ``__getattr__`` and ``__dir__`` for a package whose
public names live in heavier modules (pyarrow, aiohttp), so that importing the package, or a
light submodule of it, costs nothing until a name is used."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_names(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``names`` maps each public name to the submodule (relative, ``".api"``) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name], package), name)
        # Bound on the package from now on, also over a submodule of the same name.
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__
