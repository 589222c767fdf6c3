"""Whole images from a model: sliding windows blended, test-time augmentation, ONNX export and runtimes."""
