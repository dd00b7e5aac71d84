"""Predictors, registered by stable name (see ``base`` for the contract).

Importing this package imports every built-in predictor module so that they register.
"""
from nacc.predictors.base import Predictor, Stepper, available, get, register  # noqa: F401
from nacc.predictors import uniform, prevframe, cm  # noqa: F401,E402

for _optional in ("neural",):
    try:  # modules written by later issues; absent ones simply do not register
        __import__(f"nacc.predictors.{_optional}")
    except ModuleNotFoundError as _e:
        if _e.name != f"nacc.predictors.{_optional}":
            raise
