"""Lazy package exports (PEP 562): a package's public names are imported on first use.

Importing one module of a package then does not import every sibling, so
``rtforge reslice`` starts without loading the networking stack or the dose
kernels.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to str
        Public name -> the submodule (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()``; a name is cached there once imported.

    Returns
    -------
    tuple of callable
        ``(__getattr__, __dir__)`` to assign in the package.

    Notes
    -----
    A public name that is also the name of the submodule defining it
    (``rtforge.core.reslice``, the function, in ``rtforge/core/reslice.py``)
    stays the public object: importing a submodule normally sets the
    package's attribute to the module, which would shadow the name
    depending on import order.  The package's module class refuses that one
    assignment; the submodule is still in ``sys.modules``.
    """
    shadowed = frozenset(name for name, module in exports.items() if name == module)
    if shadowed:
        package_module = sys.modules[package]

        class _Package(type(package_module)):  # type: ignore[misc]
            def __setattr__(self, name: str, value: object) -> None:
                if name in shadowed and isinstance(value, types.ModuleType):
                    return
                super().__setattr__(name, value)

        package_module.__class__ = _Package

    def getattr_(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_
