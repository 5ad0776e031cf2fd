"""DANNet Edge export: ONNX graphs from camera frame to labels, and TensorRT engines."""
