"""Numerical kernels: the LSTM recurrence in its reference, fused and custom forms."""
