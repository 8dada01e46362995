"""A supersampled RGBA drawing surface with exact, sub-pixel polygon edges.

OpenCV's anti-aliased polygon fill (``LINE_AA``) widens shapes by about 0.7 pixel and rounds
horizontal edges to whole pixels, which would put drawn boundaries up to a pixel away from
the landmarks. So instead the face is drawn *without* anti-aliasing on a canvas ``factor``
times finer than the output (vertices in fixed point through OpenCV's ``shift`` argument) and
box-filtered down. OpenCV's scan conversion includes a fine pixel when its centre is within
half a pixel of the polygon, i.e. it grows every filled shape by half a fine pixel on
average; filled polygons are therefore moved inwards by that much before drawing. A straight
edge then lands, on average, exactly where the polygon says (within ``1 / (2 * factor)``
output pixel for any single edge).

Drawing calls are *recorded* and executed by :meth:`Canvas.flush`, which maps the vertices of
all shapes to the fine canvas in one vectorised step. The canvas is RGBA and starts
transparent, so the box filter of :meth:`Canvas.resolve` yields premultiplied colour and
coverage, for compositing over a background drawn at the output size.

Geometry is given in the normalised face frame and mapped by the 2 x 3 placement matrix.
Coordinates follow :mod:`landmarks.data.coords`: the output pixel ``(j, i)`` covers
``[j, j + 1] x [i, i + 1]``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from landmarks.data.coords import PIXEL_CENTRE

#: Fractional bits of the fixed-point vertices handed to OpenCV.
SHIFT = 4
#: How far (in fine pixels) filled polygons are moved inwards to cancel OpenCV's growth.
INSET = 0.5


def supersampling_factor(size: int) -> int:
    """A power of two that makes the fine canvas about 256 pixels wide (between 2 and 8)."""
    factor = 2 ** round(np.log2(max(256 / size, 1.0)))
    return int(min(max(factor, 2), 8))


@lru_cache(maxsize=8)
def unit_circle(n: int = 28) -> np.ndarray:
    """``n`` points on the unit circle (angle 0 first, then turning clockwise on screen)."""
    angles = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(angles), np.sin(angles)], 1)


def ellipse_points(centre: np.ndarray, axes: tuple[float, float], angle: float = 0.0, n: int = 28) -> np.ndarray:
    """Polygon of an ellipse with semi-axes ``axes`` turned by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return centre + (unit_circle(n) * axes) @ np.array([[c, s], [-s, c]])


def rgba(colour) -> tuple[float, float, float, float]:
    """An RGB colour in [0, 1] as an opaque 8-bit RGBA scalar for OpenCV (OpenCV saturates to 0..255)."""
    return (255.0 * float(colour[0]), 255.0 * float(colour[1]), 255.0 * float(colour[2]), 255.0)


_SCRATCH = threading.local()


def blank(shape: tuple[int, ...], slot: str) -> np.ndarray:
    """A zeroed uint8 array, reused between renders of the same thread (no fresh pages each time).

    Only one live array per ``slot`` and shape: the previous canvas is overwritten.
    """
    store = getattr(_SCRATCH, "arrays", None)
    if store is None:
        store = _SCRATCH.arrays = {}
    array = store.get((slot, shape))
    if array is None:
        array = store[(slot, shape)] = np.zeros(shape, np.uint8)
    else:
        array.fill(0)
    return array


def halve(image: np.ndarray) -> np.ndarray:
    """2 x 2 box average (bilinear resizing by exactly one half averages each 2 x 2 block)."""
    h, w = image.shape[:2]
    return cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)


@lru_cache(maxsize=512)
def polygon_layout(sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First and last vertex of each of the polygons of ``sizes`` vertices stored one after the
    other, and the polygon each vertex belongs to. Cached: the same drawing code produces the
    same structure again and again."""
    ends = np.cumsum(sizes)
    starts = ends - np.asarray(sizes)
    return starts, ends - 1, np.repeat(np.arange(len(sizes)), sizes)


def cyclic_neighbours(vertices: np.ndarray, starts: np.ndarray, lasts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex's previous and next vertex within its own (closed) polygon."""
    before, after = np.empty_like(vertices), np.empty_like(vertices)
    before[1:], after[:-1] = vertices[:-1], vertices[1:]
    before[starts], after[lasts] = vertices[lasts], vertices[starts]
    return before, after


def inset(vertices: np.ndarray, sizes: tuple[int, ...], distance: float) -> np.ndarray:
    """Move every vertex of closed polygons (concatenated, ``sizes`` each) ``distance`` inwards.

    Each vertex moves along the normal of the chord joining its two neighbours; "inwards"
    comes from the sign of each polygon's area (so either winding works).
    """
    starts, lasts, owner = polygon_layout(sizes)
    before, after = cyclic_neighbours(vertices, starts, lasts)
    chord = after - before
    area = np.add.reduceat(vertices[:, 0] * after[:, 1] - after[:, 0] * vertices[:, 1], starts)
    scale = (distance * np.sign(area))[owner] / (np.hypot(chord[:, 0], chord[:, 1]) + 1e-9)
    return vertices + chord[:, ::-1] * (scale[:, None] * [-1.0, 1.0])


@dataclass
class _Shape:
    """One recorded drawing call."""

    kind: str  # "fill", "stroke", "closed_stroke" or "clip"
    first: int  # index of its first polygon in the canvas' list
    count: int  # number of polygons
    colour: tuple
    width: int = 0
    occludes: bool = False
    layers: int = 0  # for "clip": how many following "fill" shapes are drawn inside it


class Canvas:
    """Fine RGBA canvas for one ``size x size`` output image.

    Args:
        size: output side in pixels.
        placement: 2 x 3 affine map from the face frame to output pixel coordinates.
        factor: supersampling factor (a power of two); default from :func:`supersampling_factor`.

    Record shapes with :meth:`fill`, :meth:`stroke` and :meth:`fill_inside` (polygons in the
    face frame: one ``(n, 2)`` array, a ``(k, n, 2)`` array or a list of arrays), then call
    :meth:`flush` to draw them, :meth:`occluded` to test points against the occluders and
    :meth:`resolve` to get the output-size image.
    """

    def __init__(self, size: int, placement: np.ndarray, factor: int | None = None) -> None:
        self.size = size
        self.factor = factor or supersampling_factor(size)
        self.placement = placement
        self.pixels = blank((size * self.factor, size * self.factor, 4), "canvas")
        self.occlusion: np.ndarray | None = None
        self.units_to_fine = float(np.hypot(*placement[:, 0])) * self.factor
        one = float(1 << SHIFT)
        self._linear = placement[:, :2].T * (self.factor * one)
        self._offset = (placement[:, 2] * self.factor - PIXEL_CENTRE) * one  # OpenCV puts pixel centres at j
        self._polygons: list[np.ndarray] = []
        self._shapes: list[_Shape] = []

    # -------------------------------------------------------------- recording
    def _record(self, polygons) -> tuple[int, int]:
        first = len(self._polygons)
        if isinstance(polygons, np.ndarray):
            self._polygons.extend(polygons if polygons.ndim == 3 else (polygons,))
        else:
            self._polygons.extend(polygons)
        return first, len(self._polygons) - first

    def fine_width(self, width: float) -> int:
        """A stroke width in face units as a whole number of fine pixels (at least 1)."""
        return max(1, int(round(width * self.units_to_fine)))

    def fill(self, polygons, colour, occludes: bool = False) -> None:
        """Fill polygons; those of one call must not overlap (no holes: the inward correction of
        :func:`inset` assumes each polygon encloses what is filled).

        ``occludes=True`` also marks the area in :attr:`occlusion` (what hides landmarks).
        """
        first, count = self._record(polygons)
        self._shapes.append(_Shape("fill", first, count, rgba(colour), occludes=occludes))

    def stroke(self, lines, colour, width: float, closed: bool = False, occludes: bool = False) -> None:
        """Draw open (or ``closed``) polylines ``width`` face units wide, centred on the points."""
        first, count = self._record(lines)
        kind = "closed_stroke" if closed else "stroke"
        self._shapes.append(_Shape(kind, first, count, rgba(colour), self.fine_width(width), occludes))

    def fill_inside(self, clip, layers: list[tuple[object, object]]) -> None:
        """Fill ``layers`` (polygons, colour), in order, but only inside the ``clip`` polygon(s).

        Used for what shows through an opening: sclera and iris inside the eyelids, teeth inside
        the lips. Works on the clip's bounding box only.
        """
        first, count = self._record(clip)
        self._shapes.append(_Shape("clip", first, count, (0, 0, 0, 0), layers=len(layers)))
        for polygons, colour in layers:
            self.fill(polygons, colour)

    # -------------------------------------------------------------- drawing
    def _fixed_polygons(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """All recorded polygons in fine fixed point: as given (strokes) and moved inwards (fills)."""
        sizes = tuple(map(len, self._polygons))
        vertices = np.concatenate(self._polygons) @ self._linear + self._offset
        shrunk = inset(vertices, sizes, INSET * (1 << SHIFT))
        ends = np.cumsum(sizes).tolist()
        bounds = list(zip([0] + ends[:-1], ends))
        raw, moved = np.rint(vertices).astype(np.int32), np.rint(shrunk).astype(np.int32)
        return [raw[a:b] for a, b in bounds], [moved[a:b] for a, b in bounds]

    def _occlusion_mask(self) -> np.ndarray:
        if self.occlusion is None:
            self.occlusion = blank(self.pixels.shape[:2], "occlusion")
        return self.occlusion

    def _draw(self, target: np.ndarray, shape: _Shape, raw: list, shrunk: list, colour) -> None:
        if shape.kind == "fill":
            cv2.fillPoly(target, shrunk[shape.first:shape.first + shape.count], colour, cv2.LINE_8, SHIFT)
        else:
            cv2.polylines(target, raw[shape.first:shape.first + shape.count], shape.kind == "closed_stroke",
                          colour, shape.width, cv2.LINE_8, SHIFT)

    def _draw_clipped(self, clip: _Shape, layers: list[_Shape], shrunk: list) -> None:
        """Draw ``layers`` on a copy of the clip's bounding box, then copy back inside the clip."""
        clips = shrunk[clip.first:clip.first + clip.count]
        corners = np.concatenate(clips)
        lo = np.maximum(corners.min(0) >> SHIFT, 0)
        hi = np.minimum((corners.max(0) >> SHIFT) + 2, self.pixels.shape[1::-1])
        if np.any(hi <= lo):
            return
        offset = tuple((-(lo << SHIFT)).tolist())  # in fixed point, like the vertices
        box = self.pixels[lo[1]:hi[1], lo[0]:hi[0]]
        mask = np.zeros(box.shape[:2], np.uint8)
        cv2.fillPoly(mask, clips, 255, cv2.LINE_8, SHIFT, offset)
        patch = box.copy()
        for layer in layers:
            cv2.fillPoly(patch, shrunk[layer.first:layer.first + layer.count], layer.colour, cv2.LINE_8, SHIFT, offset)
        cv2.copyTo(patch, mask, box)  # writes into the canvas through the view

    def flush(self) -> None:
        """Draw every recorded shape, in order, then forget them."""
        if not self._shapes:
            return
        raw, shrunk = self._fixed_polygons()
        shapes, k = self._shapes, 0
        while k < len(shapes):
            shape = shapes[k]
            if shape.kind == "clip":
                self._draw_clipped(shape, shapes[k + 1:k + 1 + shape.layers], shrunk)
                k += 1 + shape.layers
                continue
            self._draw(self.pixels, shape, raw, shrunk, shape.colour)
            if shape.occludes:
                self._draw(self._occlusion_mask(), shape, raw, shrunk, 255)
            k += 1
        self._polygons, self._shapes = [], []

    # -------------------------------------------------------------- results
    def occluded(self, points: np.ndarray) -> np.ndarray:
        """Which output-pixel points ``(n, 2)`` (our coordinates) lie under an occluder, ``(n,)`` bool."""
        self.flush()
        if self.occlusion is None:
            return np.zeros(len(points), bool)
        fine = np.floor(points * self.factor).astype(np.int64)
        inside = np.all((fine >= 0) & (fine < self.occlusion.shape[0]), axis=1)
        hit = np.zeros(len(points), bool)
        hit[inside] = self.occlusion[fine[inside, 1], fine[inside, 0]] > 0
        return hit

    def resolve(self) -> np.ndarray:
        """Box-filter to the output size: ``(S, S, 4)`` uint8, premultiplied RGB and coverage."""
        self.flush()
        fine = self.pixels
        for _ in range(int(np.log2(self.factor))):
            fine = halve(fine)
        return fine
