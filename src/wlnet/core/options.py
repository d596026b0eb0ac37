"""One validator per kind of option. Each returns the parsed value or raises an OptionError
that names who was given the option, the option, what it must be and what it was given.
torch is imported only where a value is a torch object (shapes.py uses this module)."""

from __future__ import annotations

import numbers

from .errors import OptionError, where
from .symbols import Automatic


def _fail(who: str, option: str, must: str, value, error=OptionError) -> OptionError:
    return error(f"{where(who)}{option} must be {must}, but was given {value!r}.")


def positive_int(value, who: str, option: str, allow_automatic: bool = True, error=OptionError) -> int | None:
    """A positive integer (numpy integers too); None for Automatic where allowed. `error`: the
    error type (a ShapeError for the sizes of a shape)."""
    if allow_automatic and (value is Automatic or value is None):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise _fail(who, option, "a positive integer" + (" or Automatic" if allow_automatic else ""), value, error)
    return int(value)


def positive_number(value, who: str, option: str, allow_automatic: bool = True) -> float | None:
    if allow_automatic and (value is Automatic or value is None):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise _fail(who, option, "a positive number" + (" or Automatic" if allow_automatic else ""), value)
    return float(value)


def number(value, who: str, option: str, low: float | None = None) -> float:
    """A real number, at least `low` if given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or (low is not None and value < low):
        raise _fail(who, option, "a real number" + (f" ≥ {low:g}" if low is not None else ""), value)
    return float(value)


def probability(value, who: str, option: str) -> float:
    """A dropout probability: a number with 0 ≤ p < 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise _fail(who, option, "a number with 0 ≤ p < 1", value)
    return float(value)


def seed(value, who: str, option: str = "RandomSeeding") -> int | None:
    """An integer seed, or None for Automatic (fresh randomness)."""
    if value is Automatic or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(who, option, "an integer or Automatic", value)
    return int(value)


def generator(value, who: str, device=None):
    """A torch generator seeded by RandomSeeding, or None for Automatic."""
    import torch

    s = seed(value, who)
    if s is None:
        return None
    g = torch.Generator(device=device or "cpu")
    g.manual_seed(s)
    return g


def device(value, who: str):
    """TargetDevice: "CPU", "GPU" or ("GPU", i) (1-based)."""
    import torch

    if value in ("CPU", Automatic, None):
        return torch.device("cpu")
    if value == "GPU" or (isinstance(value, tuple) and len(value) == 2 and value[0] == "GPU"
                          and isinstance(value[1], int) and value[1] >= 1):
        if not torch.cuda.is_available():
            raise OptionError(
                f'{where(who)}TargetDevice "GPU" was requested, but no CUDA device is available '
                '(torch.cuda.is_available() is False). Use TargetDevice="CPU".'
            )
        return torch.device("cuda", value[1] - 1 if isinstance(value, tuple) else 0)
    raise _fail(who, "TargetDevice", '"CPU", "GPU" or ("GPU", i)', value)


def precision(value, who: str):
    """WorkingPrecision: "Real32" or "Real64"."""
    import torch

    if value in ("Real32", Automatic):
        return torch.float32
    if value == "Real64":
        return torch.float64
    raise _fail(who, "WorkingPrecision", '"Real32" or "Real64"', value)


def one_of(value, allowed, who: str, option: str):
    if not isinstance(value, str | type(None)) or value not in allowed:
        names = [f'"{a}"' for a in allowed]
        must = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise _fail(who, option, must, value)
    return value


def known(given: dict, allowed, who: str, what: str = "a known option", plural: str = "options") -> None:
    """Every key of `given` is among `allowed`."""
    unknown = [k for k in given if k not in allowed]
    if unknown:
        raise OptionError(f"{where(who)}{unknown[0]!r} is not {what}; the {plural} are {', '.join(allowed)}.")


def method_spec(spec, methods, who: str, example: str = "") -> tuple[str, dict]:
    """A Method option: a name among `methods`, or (name, {sub-option: value}) → (name, sub-options)."""
    if isinstance(spec, str):
        name, sub = spec, {}
    elif isinstance(spec, tuple | list) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], dict):
        name, sub = spec
    else:
        name, sub = None, None
    if name not in methods:
        raise OptionError(
            f"{where(who)}Method must be one of {', '.join(repr(m) for m in methods)}, or (method, {{sub-option: "
            f"value}}){' such as ' + example if example else ''}, but was given {spec!r}."
        )
    return name, sub
