"""SiamBAN box tracking: model, point targets, losses, tracker, evaluation, ONNX export and recipe."""
