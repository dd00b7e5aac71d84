"""Predictors, registered by stable name (see ``base`` for the contract).

Importing this package imports the default predictor's module (``cm``, which imports numba
only when a kernel runs without its ahead-of-time build) so that it registers; the other
built-in modules and the optional ones below are declared to ``base.declare_lazy`` and
imported on first need: when a name not registered yet is asked for, or all are listed.
"""
import importlib as _importlib

from nacc.predictors import base as _base
from nacc.predictors import cm  # noqa: F401  (the default predictor registers)
from nacc.predictors.base import (  # noqa: F401  (the package's interface)
    Predictor,
    Stepper,
    available,
    get,
    register,
)

_BUILTIN_LAZY = ("uniform", "prevframe", "gpt")
for _name in _BUILTIN_LAZY:
    _base.declare_lazy(f"nacc.predictors.{_name}")

for _optional in ("neural",):
    # a module left out of an install simply registers nothing
    _base.declare_lazy(f"nacc.predictors.{_optional}")


def __getattr__(name: str):
    if name in _BUILTIN_LAZY:  # ``nacc.predictors.uniform`` imports the module on access
        return _importlib.import_module(f"nacc.predictors.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
