"""Keeping and shipping nets: ONNX out and in (`onnx`), plain torch modules (`torch`)."""
