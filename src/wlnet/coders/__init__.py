"""Encoders and decoders: user values (strings, labels) to tensors and back."""
