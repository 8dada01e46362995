"""Occluders drawn in front of the face; their opaque parts also mark the canvas' occlusion mask.

A landmark under an occluder is reported as not visible (its position is still the true one,
as in COFW-style annotations). Thin parts (glasses arms, mask straps, pleats) do not count.
"""
from __future__ import annotations

import numpy as np

from landmarks.data.synthetic import geometry as g
from landmarks.data.synthetic.canvas import Canvas, ellipse_points, unit_circle
from landmarks.data.synthetic.params import Occluder


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def rounded_rectangle(centre: np.ndarray, half: tuple[float, float], angle: float = 0.0, n: int = 32) -> np.ndarray:
    """A superellipse (exponent 4): a rectangle with rounded corners."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    unit = np.stack([np.sign(c) * np.abs(c) ** 0.5, np.sign(s) * np.abs(s) ** 0.5], 1)
    return centre + (unit * half) @ _rotation(angle).T


def draw_sunglasses(canvas: Canvas, shape: np.ndarray, occ: Occluder) -> None:
    """Two dark lenses in a frame over the eyes, a bridge and the arms to the ears.

    Only the lenses and their rims hide landmarks; the thin bridge and arms do not.
    """
    centres = shape[g.EYE_CENTRES].mean(1) + [0.0, 0.025]
    half = np.array([occ.size, 0.72 * occ.size])
    lens = unit_circle(28) if occ.shape == 0 else rounded_rectangle(np.zeros(2), (1.0, 1.0))
    frame = np.asarray(occ.colour) * 0.5
    canvas.fill(centres[:, None] + lens * (half + 0.03), frame, occludes=True)
    canvas.fill(centres[:, None] + lens * half, occ.colour, occludes=True)
    inner = centres + [[half[0], 0.0], [-half[0], 0.0]]
    canvas.stroke(np.stack([inner[0], 0.5 * (inner[0] + inner[1]) - [0.0, 0.04], inner[1]]), frame, 0.03)
    outer = centres - [[half[0], 0.0], [-half[0], 0.0]]
    canvas.stroke(np.stack([np.stack([outer[0], shape[0] - [0.0, 0.12]]), np.stack([outer[1], shape[16] - [0.0, 0.12]])]),
                  frame, 0.03)


def draw_hand(canvas: Canvas, shape: np.ndarray, occ: Occluder) -> None:
    """A hand raised in front of the lower face: wrist, palm and fingers (separated by darker rims)."""
    s, rot = occ.size, _rotation(occ.angle)
    up, across = rot @ np.array([0.0, -1.0]), rot @ np.array([1.0, 0.0])
    palm = shape[57] + np.asarray(occ.anchor) - [0.0, 0.4] - up * 1.2 * s
    tone = np.asarray(occ.colour)
    wrist = np.stack([palm - across * 0.6 * s, palm + across * 0.6 * s, palm + (0.7 * across - 3 * up) * s,
                      palm - (0.7 * across + 3 * up) * s])
    canvas.fill(wrist, tone, occludes=True)
    canvas.fill(ellipse_points(palm, (0.75 * s, 0.85 * s), occ.angle), tone, occludes=True)
    offsets, lengths = np.array([-0.55, -0.18, 0.18, 0.55]), np.array([0.85, 1.0, 0.95, 0.75])
    bases = palm + np.outer(offsets * s, across) + up * 0.3 * s
    tips = bases + np.outer(lengths * 1.1 * s, up)
    thumb_side = 1.0 if occ.shape else -1.0
    thumb = (palm + across * thumb_side * 0.5 * s, palm + (across * thumb_side * 1.1 + up * 0.5) * s)
    for starts, ends in ((bases, tips), (thumb[0][None], thumb[1][None])):  # thumb apart: it may touch a finger
        rim, flesh = capsules(starts, ends, (0.18 * s, 0.14 * s))
        canvas.fill(rim, tone * 0.72, occludes=True)
        canvas.fill(flesh, tone)


def capsules(starts: np.ndarray, ends: np.ndarray, radii: tuple[float, ...], n: int = 16) -> list[np.ndarray]:
    """For each radius, ``(k, n, 2)`` stadium shapes (rounded sticks) from each start to each end point."""
    direction = ends - starts
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    normal = direction[:, ::-1] * [-1.0, 1.0]
    half_turn = np.linspace(-np.pi / 2, np.pi / 2, n // 2)
    cap = np.cos(half_turn)[:, None] * direction[:, None] + np.sin(half_turn)[:, None] * normal[:, None]
    return [np.concatenate([ends[:, None] + r * cap, starts[:, None] - r * cap], axis=1) for r in radii]


def draw_face_mask(canvas: Canvas, shape: np.ndarray, occ: Occluder) -> None:
    """A surgical mask from the cheekbones over the nose to below the chin, with pleats and ear loops."""
    centre = shape[g.JAW].mean(0)
    top = np.stack([shape[1], 0.5 * (shape[1] + shape[29]) + [0.0, 0.05], 0.6 * shape[29] + 0.4 * shape[30],
                    0.5 * (shape[15] + shape[29]) + [0.0, 0.05], shape[15]])
    bottom = shape[[3, 6, 8, 10, 13]]
    bottom = bottom + 0.06 * (bottom - centre) / np.linalg.norm(bottom - centre, axis=1, keepdims=True)
    colour = np.asarray(occ.colour)
    canvas.fill(np.concatenate([g.spline(top, 4), g.spline(bottom, 4)[::-1]]), colour, occludes=True)
    pleats = g.spline(top + np.array([0.3, 0.55, 0.78])[:, None, None] * (bottom - top), 4)[:, 2:-2]
    canvas.stroke(pleats, colour * 0.82, 0.02)
    loops = np.stack([np.stack([top[0], shape[0] - [0.0, 0.1]]), np.stack([top[-1], shape[16] - [0.0, 0.1]])])
    canvas.stroke(loops, colour * 0.9, 0.025)


def draw_hair_lock(canvas: Canvas, shape: np.ndarray, occ: Occluder) -> None:
    """A lock of hair falling from the forehead across one brow towards the eye."""
    x = shape[27, 0] + occ.anchor[0]
    side = np.sign(occ.anchor[0])
    path = np.array([[x - 0.1 * side, -1.3], [x + 0.05 * side, -0.75], [x + 0.15 * side, -0.42],
                     [x + 0.1 * side, -0.22]])
    curve = g.spline(path, 4)
    canvas.fill(g.band(curve, occ.size * side * np.linspace(1.0, 0.25, len(curve))), occ.colour, occludes=True)


def draw_object(canvas: Canvas, shape: np.ndarray, occ: Occluder) -> None:
    """A plain object (ball-like or phone-like) in front of the face, with a highlight stripe."""
    centre = shape[30] + np.asarray(occ.anchor)
    half = (occ.size, 0.6 * occ.size)
    body = ellipse_points(centre, half, occ.angle) if occ.shape == 0 else rounded_rectangle(centre, half, occ.angle)
    colour = np.asarray(occ.colour)
    canvas.fill(body, colour, occludes=True)
    shine = rounded_rectangle(centre + _rotation(occ.angle) @ [0.0, -0.3 * half[1]], (0.7 * half[0], 0.12 * half[1]),
                              occ.angle)
    canvas.fill(shine, np.minimum(colour * 1.3 + 0.1, 1.0))


DRAWERS = {"sunglasses": draw_sunglasses, "hand": draw_hand, "mask": draw_face_mask, "hair": draw_hair_lock,
           "object": draw_object}


def draw_occluders(canvas: Canvas, shape: np.ndarray, occluders: tuple[Occluder, ...]) -> None:
    """Draw each occluder in turn over the face."""
    for occ in occluders:
        DRAWERS[occ.kind](canvas, shape, occ)
