"""Free anchor labels for faces: 68 3D landmarks (annotator, file format) and face-region tools.

Kept free of TensorFlow so that the annotator runs in its own MediaPipe environment.
"""
