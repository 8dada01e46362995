"""Data: from files (or the synthetic renderer) to sample dicts of face crops and landmarks.

- :mod:`~landmarks.data.coords`: the pixel convention every module shares;
- :mod:`~landmarks.data.layouts`: landmark schemes (300W, WFLW, COFW, AFLW, your own);
- :mod:`~landmarks.data.formats`: the benchmarks' annotation files;
- :mod:`~landmarks.data.datasets`: crops around faces of real photos, and the benchmarks' loaders;
- :mod:`~landmarks.data.folders`: any folder of faces (``.pts`` beside each image, or a CSV / JSON of points);
- :mod:`~landmarks.data.cache`: face crops decoded once, in memory or in a folder;
- :mod:`~landmarks.data.face_detection`: faces found in a photo (OpenCV's cascade), as landmark boxes;
- :mod:`~landmarks.data.synthetic`: the book's rendered faces in four domains;
- :mod:`~landmarks.data.transforms`: augmentation (one geometric engine, torchvision v2);
- :mod:`~landmarks.data.views`: datasets seen differently (black images, in memory, unlabelled, ...);
- :mod:`~landmarks.data.shape_model`: the packaged 300W shape model.
"""
