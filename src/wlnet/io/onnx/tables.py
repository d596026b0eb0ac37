"""What ONNX out and ONNX in share: the onnx package, the names of recurrent states, the named
elementwise functions and their ONNX ops, and the metadata keys of a wlnet export."""

from __future__ import annotations

import json

from ...core.errors import NotSupportedError

# wlnet's named function → ONNX op (ONNX in reads it backwards)
FUNCTIONS = {"Tanh": "Tanh", "LogisticSigmoid": "Sigmoid", "Ramp": "Relu", "Sin": "Sin", "Exp": "Exp"}

# metadata of a wlnet export: JSON of {port: {"spec": ..., "code": ...}} for the encoders and the
# decoders, and {state output name: its position} for the final states
ENCODERS = "wlnet.encoders"
DECODERS = "wlnet.decoders"
STATES = "wlnet.states"


def require_onnx(what: str):
    """The onnx package, or a NotSupportedError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise NotSupportedError(f"{what} needs the onnx package: pip install wlnet[onnx] (or pip install onnx).") \
            from None
    return onnx


def port_name(position: tuple) -> str:
    """The ONNX name of a recurrent state: NetPort(1, "State")."""
    return "NetPort(" + ", ".join(json.dumps(p) if isinstance(p, str) else repr(p) for p in position) + ")"
