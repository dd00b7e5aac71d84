"""Predictors, registered by stable name (see ``base`` for the contract).

Every module of this package except ``base`` defines predictors and registers them with
``@register``: a new predictor is a new module here and nothing else.  Importing the
package imports the default predictor's module (``cm``, which imports numba only when a
kernel runs without its ahead-of-time build); the others are found in the package folder,
declared to ``base.declare_lazy`` and imported on first need: when a name not registered
yet is asked for (a module named like the predictor first), or all are listed.  A module
left out of an install (a minimal submission) simply registers nothing.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from nacc.predictors import base as _base
from nacc.predictors import cm  # noqa: F401  (the default predictor registers)
from nacc.predictors.base import (  # noqa: F401  (the package's interface)
    Predictor,
    Stepper,
    available,
    get,
    register,
)

_MODULES = tuple(sorted(m.name for m in _pkgutil.iter_modules(__path__)
                        if m.name not in ("base", "cm")))
for _name in _MODULES:
    _base.declare_lazy(f"{__name__}.{_name}")


def __getattr__(name: str):
    if name in _MODULES:  # ``nacc.predictors.uniform`` imports the module on access
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
