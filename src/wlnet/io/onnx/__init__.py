"""ONNX files. Out: `export` (the model, a converter per layer class), `export_graph` (the
graph being written and the pieces converters share), `export_sequence` (the sequence and list
layers). In: `importer` (reading the file and the graph, building the net), `values` (the abstract
values of ONNX tensors), `import_ops` (a handler per ONNX operator), `import_join` (values joined
and picked apart, bidirectional nodes). Both: `tables`. The onnx packages are imported only when
an ONNX file is written or read."""

from .export import export_onnx, to_model
from .importer import import_onnx
from .tables import port_name, require_onnx

__all__ = ["export_onnx", "import_onnx", "port_name", "require_onnx", "to_model"]
