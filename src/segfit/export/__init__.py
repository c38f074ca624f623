"""Exchange formats shared by every model family (ONNX graphs checked in onnxruntime)."""
