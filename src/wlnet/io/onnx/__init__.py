"""ONNX out (`export`, `export_graph`, `export_sequence`) and in (`importer`, `import_ops`,
`import_join`). The onnx packages are imported only when an ONNX file is written or read."""

from .export import export_onnx, import_onnx, port_name, require_onnx, to_model

__all__ = ["export_onnx", "import_onnx", "port_name", "require_onnx", "to_model"]
