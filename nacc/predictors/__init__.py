"""Predictors, registered by stable name (see ``base`` for the contract).

Importing this package imports the default predictor's module (``cm``, which imports numba
only when a kernel runs without its ahead-of-time build) so that it registers; every other
module of this package is declared to ``base.declare_lazy`` and imported on first need: when
a name not registered yet is asked for, or all are listed.  A new predictor is a new module
here (``@register`` on its class); nothing else lists it.
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

# the predictor modules besides the contract (base) and the default (cm), found in the
# package (a module left out of an install simply registers nothing)
_LAZY = tuple(sorted(m.name for m in _pkgutil.iter_modules(__path__)
                     if m.name not in ("base", "cm")))
for _name in _LAZY:
    _base.declare_lazy(f"nacc.predictors.{_name}")


def __getattr__(name: str):
    if name in _LAZY:  # ``nacc.predictors.uniform`` imports the module on access
        return _importlib.import_module(f"nacc.predictors.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
