"""The functions NetTrain is given as options (LearningRateSchedule, TrainingProgressFunction, a
TrainingStoppingCriterion function): their arity checked when the option is read, and their
calls, so that a function that cannot be called as NetTrain calls it fails with a clear error."""

from __future__ import annotations

import inspect

from ..core.errors import OptionError

WHO = "NetTrain"
SCHEDULE_FORM = "f(batch, total batches)"
INFO_FORM = "f(progress dict)"


def _signature(f):
    """f's signature, or None where Python has none (some builtins and C callables)."""
    try:
        return inspect.signature(f)
    except (TypeError, ValueError):
        return None


def _function_name(f) -> str:
    return getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or type(f).__name__


def check_arity(f, arity: int, what: str, form: str) -> None:
    """Refuse, when the option is given, a function that cannot be called with `arity` positional
    arguments (a function with *args or defaults that accepts them is fine). A function without
    a signature is accepted; `call` then explains a call that fails."""
    sig = _signature(f)
    if sig is None:
        return
    try:
        sig.bind(*range(arity))
    except TypeError as e:
        raise OptionError(f"{WHO}: {what} must be a function {form}, called with {arity} argument"
                          f"{'s' if arity != 1 else ''}, but {_function_name(f)}{sig} cannot be called so ({e}).") \
            from None


def call(f, args: tuple, what: str, form: str):
    """f(*args); a TypeError from a function whose signature could not be checked (`check_arity`)
    is turned into an OptionError saying how the function is called."""
    try:
        return f(*args)
    except TypeError as e:
        if _signature(f) is not None:
            raise  # the arity was checked: the error is the function's own
        raise OptionError(f"{WHO}: {what} {_function_name(f)} could not be called as a function {form}: "
                          f"{type(e).__name__}: {e}") from e
