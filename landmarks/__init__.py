"""landmarks: facial landmark detection, from the PIPNet, LaplaceKL and fine-grained CropNet papers."""
__version__ = "0.1.0"
