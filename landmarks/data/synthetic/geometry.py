"""Face geometry in the normalised face frame: curves through landmarks, expressions, head outline.

All functions work on a ``(68, 2)`` iBUG shape in the frame of :mod:`landmarks.data.shape_model`
(inter-ocular distance about 1, x right, y down) and return new arrays.

Expressions are explicit displacements of the points that move (all amounts in face units):

* ``mouth_open`` in [-1, 1]: negative values close the gap between the inner lips (-1 shuts
  the mouth); positive values drop the lower lip and the chin by up to 0.3 (jaw opening).
* ``smile`` in [0, 1]: mouth corners move out and up by up to 0.06 / 0.05, their neighbours
  half as much, the lower eyelids rise a little (cheeks push up).
* ``brow_raise`` in [-1, 1]: positive lifts the brows by up to 0.08 (most in the middle);
  negative frowns (inner brow ends down and towards each other).
* ``eye_open`` in [0, 1.3]: 1 keeps the eyelids, 0 closes them (the lids meet on a line
  lying two thirds of the way down), above 1 widens the eyes.
"""
from __future__ import annotations

from functools import cached_property, lru_cache

import numpy as np

# ------------------------------------------------------------------ index groups of the iBUG 68 layout
JAW = np.arange(0, 17)
LEFT_BROW = np.arange(17, 22)   # image left; 17 is the outer end
RIGHT_BROW = np.arange(22, 27)  # 26 is the outer end
NOSE_BRIDGE = np.arange(27, 31)
NOSE_BASE = np.arange(31, 36)
LEFT_EYE = np.arange(36, 42)    # 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid
RIGHT_EYE = np.arange(42, 48)   # 42 inner corner, 43-44 upper lid, 45 outer corner, 46-47 lower lid
OUTER_LIPS = np.arange(48, 60)  # 48 / 54 corners, 49-53 upper, 55-59 lower
INNER_LIPS = np.arange(60, 68)  # 60 / 64 corners, 61-63 upper, 65-67 lower

#: The six points of each eye, as one index array (their means are the eye centres).
EYE_CENTRES = np.array([np.arange(36, 42), np.arange(42, 48)])
#: (upper, lower) inner-lip point pairs facing each other.
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
#: (upper, lower) eyelid point pairs facing each other.
EYELID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))


# ------------------------------------------------------------------ curves
@lru_cache(maxsize=16)
def _catmull_rom_basis(samples: int) -> np.ndarray:
    """``(samples, 4)`` weights of the four control points at ``t = 0, 1/samples, ...``."""
    t = np.arange(samples) / samples
    t2, t3 = t * t, t * t * t
    return 0.5 * np.stack([-t + 2 * t2 - t3, 2 - 5 * t2 + 3 * t3, t + 4 * t2 - 3 * t3, t3 - t2], 1)


@lru_cache(maxsize=256)
def spline_matrix(n: int, samples: int, closed: bool) -> np.ndarray:
    """The ``(M, n)`` matrix taking ``n`` control points to the ``M`` points of their Catmull-Rom curve.

    Open curves are extended at both ends by reflecting the neighbour of the end point.
    """
    eye = np.eye(n)
    if closed:
        padded = np.concatenate([eye[-1:], eye, eye[:2]])
        segments = n
    else:
        padded = np.concatenate([2 * eye[:1] - eye[1:2], eye, 2 * eye[-1:] - eye[-2:-1]])
        segments = n - 1
    quads = padded[np.arange(segments)[:, None] + np.arange(4)]
    rows = (_catmull_rom_basis(samples) @ quads).reshape(-1, n)
    return rows if closed else np.concatenate([rows, eye[-1:]])


def spline(points: np.ndarray, samples: int = 4, closed: bool = False) -> np.ndarray:
    """Catmull-Rom curve through every point of ``points`` (..., n, 2), ``samples`` points per segment.

    The curve passes exactly through the given points, so a shape filled with it has its
    boundary on the landmarks. Open curves start and end at the first and last point. A
    leading batch dimension draws several curves at once.
    """
    return spline_matrix(points.shape[-2], samples, closed) @ points


@lru_cache(maxsize=64)
def difference_matrix(n: int) -> np.ndarray:
    """``(n, n)`` central differences (one-sided at the ends): the tangents of an open polyline."""
    d = np.zeros((n, n))
    d[np.arange(1, n - 1), np.arange(2, n)] = 1.0
    d[np.arange(1, n - 1), np.arange(0, n - 2)] = -1.0
    d[0, :2] = d[-1, -2:] = (-1.0, 1.0)
    return d


def normals(curve: np.ndarray) -> np.ndarray:
    """Unit normals of open polylines (..., n, 2), pointing right of the direction of travel on screen (y down)."""
    tangent = difference_matrix(curve.shape[-2]) @ curve
    length = np.sqrt(np.sum(tangent * tangent, axis=-1, keepdims=True)) + 1e-12
    return tangent[..., ::-1] * (np.array([-1.0, 1.0]) / length)


def band(curve: np.ndarray, widths: np.ndarray | float) -> np.ndarray:
    """Closed polygon(s) between ``curve`` (..., n, 2) and its copy shifted by ``widths`` along :func:`normals`."""
    offset = curve + normals(curve) * np.reshape(widths, np.shape(widths) + (1,))
    return np.concatenate([curve, offset[..., ::-1, :]], axis=-2)


DOWN = np.array([0.0, 1.0])
RIGHT = np.array([1.0, 0.0])


def shifted_band(curve: np.ndarray, widths: np.ndarray | float, direction: np.ndarray = DOWN) -> np.ndarray:
    """Closed polygon(s) between ``curve`` (..., n, 2) and its copy moved by ``widths`` along a fixed
    face-frame ``direction`` (cheaper than :func:`band` where the curve runs across that direction)."""
    offset = curve + np.reshape(widths, np.shape(widths) + (1,)) * direction
    return np.concatenate([curve, offset[..., ::-1, :]], axis=-2)


@lru_cache(maxsize=64)
def profile(kind: str, n: int) -> np.ndarray:
    """Width profiles along a curve of ``n`` points (cached): ``"rising"`` 0 -> 1 as a square root,
    ``"linear"`` 0 -> 1, ``"arch"`` a sine bump that is small at both ends."""
    s = np.linspace(0.0, 1.0, n)
    if kind == "rising":
        return np.sqrt(s)
    if kind == "arch":
        return np.sin(0.15 + s * (np.pi - 0.3))
    return s


def eye_openings(shape: np.ndarray, samples: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower lid curves of both eyes, ``(2, M, 2)`` each, from the first corner to the second.

    Eye corners are sharp: each lid is its own curve. Left eye: 36 -> 39, right eye: 42 -> 45.
    """
    upper = spline(shape[[[36, 37, 38, 39], [42, 43, 44, 45]]], samples)
    lower = spline(shape[[[39, 40, 41, 36], [45, 46, 47, 42]]], samples)
    return upper, lower


def lip_outlines(shape: np.ndarray, samples: int = 4) -> dict[str, np.ndarray]:
    """Curves of the mouth: outer upper/lower lip (48 -> 54) and inner upper/lower (60 -> 64)."""
    return {
        "outer_upper": spline(shape[48:55], samples),
        "outer_lower": spline(shape[[54, 55, 56, 57, 58, 59, 48]], samples)[::-1],
        "inner_upper": spline(shape[60:65], samples),
        "inner_lower": spline(shape[[64, 65, 66, 67, 60]], samples)[::-1],
    }


# ------------------------------------------------------------------ expressions
_UPPER_INNER, _LOWER_INNER = np.array([61, 62, 63]), np.array([67, 66, 65])
_LOWER_OUTER = np.array([57, 56, 58, 55, 59])
_LIP_LIFT = (np.array([1, 2, 0, 2, 0]), np.array([1.0, 1.0, 1.0, 0.6, 0.6]))
_JAW_DROP = np.array([0.15, 0.4, 0.65, 0.75, 0.65, 0.4, 0.15])


def open_mouth(shape: np.ndarray, amount: float) -> np.ndarray:
    """Close (``amount < 0``) or open (``amount > 0``) the mouth; see the module docstring."""
    s = shape.copy()
    s[_LOWER_INNER, 1] = np.maximum(s[_LOWER_INNER, 1], s[_UPPER_INNER, 1])  # inner lips never cross
    if amount < 0:
        lift = -amount * (s[_LOWER_INNER, 1] - s[_UPPER_INNER, 1])
        s[_LOWER_INNER, 1] -= lift
        s[_LOWER_OUTER, 1] -= lift[_LIP_LIFT[0]] * _LIP_LIFT[1]
    elif amount > 0:
        drop = 0.3 * amount
        s[_LOWER_INNER, 1] += drop * np.array([0.85, 1.0, 0.85])
        s[55:60, 1] += drop * np.array([0.5, 0.85, 1.0, 0.85, 0.5])
        s[[48, 54, 60, 64], 1] += drop * 0.2
        s[5:12, 1] += drop * _JAW_DROP
    return s


_SMILE_POINTS = np.array([48, 54, 60, 64, 49, 53, 59, 55, 61, 63, 67, 65])
_SMILE_WEIGHTS = np.array([1.0, 1.0, 0.9, 0.9, 0.45, 0.45, 0.5, 0.5, 0.3, 0.3, 0.35, 0.35])
_SMILE_SIDES = np.array([-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0])


def smile(shape: np.ndarray, amount: float) -> np.ndarray:
    """Pull the mouth corners out and up and raise the lower eyelids a little."""
    s = shape.copy()
    w = _SMILE_WEIGHTS * amount
    s[_SMILE_POINTS, 0] += 0.06 * w * _SMILE_SIDES
    s[_SMILE_POINTS, 1] -= 0.05 * w
    s[[40, 41, 46, 47], 1] -= 0.012 * amount
    return s


def raise_brows(shape: np.ndarray, amount: float) -> np.ndarray:
    """Lift (``amount > 0``) or knit (``amount < 0``) the eyebrows."""
    s = shape.copy()
    if amount >= 0:
        s[17:27, 1] -= 0.08 * amount * np.array([0.6, 0.9, 1.0, 0.9, 0.7, 0.7, 0.9, 1.0, 0.9, 0.6])
    else:
        pull = -amount * np.array([0.0, 0.2, 0.5, 0.8, 1.0, 1.0, 0.8, 0.5, 0.2, 0.0])
        centre = 0.5 * (s[21, 0] + s[22, 0])
        s[17:27, 1] += 0.05 * pull
        s[17:27, 0] += 0.02 * pull * np.sign(centre - s[17:27, 0])
    return s


_UPPER_LIDS, _LOWER_LIDS = np.array([37, 38, 43, 44]), np.array([41, 40, 47, 46])


def open_eyes(shape: np.ndarray, amount: float) -> np.ndarray:
    """Scale each eyelid pair's opening by ``amount`` about a line two thirds of the way down."""
    s = shape.copy()
    closed = s[_UPPER_LIDS] + (2.0 / 3.0) * (s[_LOWER_LIDS] - s[_UPPER_LIDS])
    s[_UPPER_LIDS] = closed + amount * (s[_UPPER_LIDS] - closed)
    s[_LOWER_LIDS] = closed + amount * (s[_LOWER_LIDS] - closed)
    return s


def apply_expression(shape: np.ndarray, mouth_open: float = 0.0, smile_amount: float = 0.0,
                     brow_raise: float = 0.0, eye_open: float = 1.0) -> np.ndarray:
    """All four expression factors, in the order mouth, smile, brows, eyes (neutral ones skipped)."""
    s = open_mouth(shape, mouth_open)
    if smile_amount:
        s = smile(s, smile_amount)
    if brow_raise:
        s = raise_brows(s, brow_raise)
    return open_eyes(s, eye_open) if eye_open != 1.0 else s


# ------------------------------------------------------------------ head outline
class HeadFrame:
    """Axes of the head for drawing what the 68 points do not cover (cranium, hair, ears, neck).

    ``centre`` is the midpoint of jaw points 0 and 16, ``across`` the unit vector from 0 to 16,
    ``up`` the perpendicular pointing to the forehead, ``half_width`` half the 0-16 distance.
    ``turn`` (in face units) shifts the back of the head sideways for a turned head.
    """

    def __init__(self, shape: np.ndarray, turn: float = 0.0) -> None:
        left, right = shape[0], shape[16]
        self.centre = 0.5 * (left + right)
        span = right - left
        self.half_width = 0.5 * float(np.hypot(*span))
        self.across = span / (2 * self.half_width)
        self.up = np.array([self.across[1], -self.across[0]])
        self.turn = turn

    def point(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Points at ``x`` half-widths across and ``y`` half-widths up from the centre."""
        return self.points(np.stack(np.broadcast_arrays(x, y), -1))

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Points given as ``(..., 2)`` head coordinates (half-widths across, half-widths up)."""
        return xy @ self._axes + self.centre

    @cached_property
    def _axes(self) -> np.ndarray:
        return self.half_width * np.stack([self.across, self.up])

    def dome(self, width: float, height: float, start: float = 0.0, stop: float = np.pi, n: int = 24,
             flatness: float = 1.0) -> np.ndarray:
        """Arc ``(width cos t, height sin t)`` in half-widths for t from ``start`` to ``stop``.

        ``flatness`` < 1 flattens the top (a superellipse); the back of the head follows ``turn``.
        """
        cos, sin, rise = unit_arc(start, stop, n, flatness)
        return self.points(np.stack([width * cos - self.turn * rise, height * sin], -1))


@lru_cache(maxsize=32)
def unit_arc(start: float, stop: float, n: int, flatness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``cos t``, the (flattened) ``sin t`` and its positive part, for ``n`` angles from ``start`` to ``stop``."""
    t = np.linspace(start, stop, n)
    sin = np.sign(np.sin(t)) * np.abs(np.sin(t)) ** flatness
    return np.cos(t), sin, np.clip(sin, 0.0, None)


def face_outline(shape: np.ndarray, head: HeadFrame, cranium_height: float, samples: int = 4) -> np.ndarray:
    """Closed outline of the face skin: the jaw curve 0 -> 16 then the cranium back over the top."""
    jaw = spline(shape[JAW], samples)
    top = head.dome(1.0, cranium_height, 0.0, np.pi, n=26)[1:-1]
    return np.concatenate([jaw, top])


def brow_top_height(shape: np.ndarray, head: HeadFrame) -> float:
    """Highest brow point above the head centre, in half-widths."""
    return float(((shape[17:27] - head.centre) @ head.up).max() / head.half_width)
