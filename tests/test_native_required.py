"""The native kernels where they are required (WLNET_REQUIRE_NATIVE=1, as CI sets it): built and
running; and what `native.get()` does with a failed build when they are."""

from __future__ import annotations

import os

import pytest
import torch

from wlnet.kernels import native


@pytest.mark.skipif(not native.required(), reason="WLNET_REQUIRE_NATIVE is not set: the native kernels are optional")
def test_native_kernel_is_built_and_runs(monkeypatch):
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
    lib = native.get()
    assert lib is not None, native.build_error()
    x = torch.ones(2, 3, 2)  # (T, B, k) time-major
    arrays = [torch.full((4, 2), 0.1)] * 4 + [torch.full((4, 4), 0.1)] * 4 + [torch.zeros(4)] * 4
    S, s_T, c_T = lib.forward(x, None, None, arrays, [], None, None, None, [])[:3]
    assert S.shape == (3, 3, 4) and torch.isfinite(S).all() and s_T.abs().sum() > 0
    assert torch.equal(s_T, S[2])


def test_required_kernel_that_did_not_build_is_an_error(monkeypatch):
    def failing_build():
        raise RuntimeError("Error building extension: no compiler")

    monkeypatch.setattr(native, "_build", failing_build)
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_error", None)
    monkeypatch.delenv("WLNET_NO_NATIVE", raising=False)
    monkeypatch.setenv("WLNET_REQUIRE_NATIVE", "1")
    with pytest.raises(RuntimeError, match=r"(?s)native kernel is required.*no compiler"):
        native.get()
    assert native.build_error() == "RuntimeError: Error building extension: no compiler"
    monkeypatch.setenv("WLNET_NO_NATIVE", "1")  # disabled on purpose: the fallback, no error
    assert native.get() is None
    monkeypatch.delenv("WLNET_NO_NATIVE")
    monkeypatch.delenv("WLNET_REQUIRE_NATIVE")
    assert native.get() is None  # optional: the fallback


def test_build_error_is_none_when_built():
    if os.environ.get("WLNET_NO_NATIVE", "").strip() not in ("", "0"):
        pytest.skip("the native kernels are disabled here")
    try:
        lib = native.get()
    except RuntimeError:
        lib = None
    assert (lib is None) == (native.build_error() is not None)
