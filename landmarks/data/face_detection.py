"""Faces found in a photo: OpenCV's Haar cascade, and its boxes turned into landmark boxes.

A landmark detector is given a crop around one face; a photo has to be searched for faces first.
:func:`detect_faces` runs the frontal-face Haar cascade that ships inside ``opencv-python``
(``cv2.data.haarcascades``, nothing to download) and returns one box per face, largest first::

    boxes = detect_faces(photo)                        # (K, 4) x0, y0, x1, y1, our pixel convention
    points = detector.predict([photo] * len(boxes), boxes=boxes)

A detector's box is not the box a landmark model was trained with. The cascade's square runs from
the forehead to about the chin; 300W's crops are built from the landmarks' bounding box (brows to
chin, jaw to jaw). :func:`detect_faces` therefore returns *landmark-like* boxes: the cascade's
square moved down by ``shift`` x its side and scaled by ``scale`` (:data:`CASCADE_BOX`). The values,
0.13 and 0.87, are the medians measured on the library's synthetic faces where the cascade finds
one (150 of 200 studio faces: shift 0.140, scale 0.854; 46 of 200 wild faces: 0.121, 0.881): real
faces have not been measured here, and a model trained with another crop convention wants its own
calibration. Profiles and strongly rotated faces are missed by a frontal cascade; pass boxes
yourself for those.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["BoxCalibration", "CASCADE_BOX", "detect_faces", "cascade_path"]


@dataclass(frozen=True)
class BoxCalibration:
    """How a face detector's square maps to a landmark box: moved down by ``shift`` x its side,
    then scaled by ``scale`` about its centre."""

    shift: float = 0.13
    scale: float = 0.87

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + np.stack([np.zeros_like(side), self.shift * side], axis=1)
        half = self.scale * side / 2
        return np.concatenate([centre - half[:, None], centre + half[:, None]], axis=1)


CASCADE_BOX = BoxCalibration()


def cascade_path(name: str = "haarcascade_frontalface_default.xml") -> Path:
    """The cascade file installed with OpenCV."""
    path = Path(cv2.data.haarcascades) / name
    if not path.is_file():
        raise FileNotFoundError(f"OpenCV's face cascade is missing: {path} (reinstall opencv-python)")
    return path


def detect_faces(image: np.ndarray, min_size: float = 0.08, scale_factor: float = 1.1, min_neighbours: int = 5,
                 calibration: BoxCalibration | None = CASCADE_BOX) -> np.ndarray:
    """Landmark-like boxes ``(K, 4)`` (``x0, y0, x1, y1``) of the frontal faces in ``image``.

    ``image``: ``(H, W, 3)`` RGB or ``(H, W)`` uint8. ``min_size``: smallest face side as a
    fraction of the shorter image side. The cascade's pixel-index rectangles are converted to our
    continuous coordinates (a rectangle ``x, y, w, h`` covers ``[x, x + w)``), then calibrated
    (``calibration=None`` keeps the cascade's own squares). Largest face first; ``(0, 4)`` when
    there is none.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"detect_faces: expected an (H, W, 3) or (H, W) uint8 image, got {image.dtype} {image.shape}")
    gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    smallest = max(12, int(min_size * min(gray.shape)))
    cascade = cv2.CascadeClassifier(str(cascade_path()))
    found = cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=scale_factor, minNeighbors=min_neighbours,
                                     minSize=(smallest, smallest))
    if len(found) == 0:
        return np.zeros((0, 4))
    rects = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    boxes = boxes[np.argsort(-(rects[:, 2] * rects[:, 3]), kind="stable")]
    return calibration.apply(boxes) if calibration is not None else boxes
