"""Drawing a face on a :class:`~landmarks.data.synthetic.canvas.Canvas` so the 68 points sit on its boundaries.

Where each iBUG landmark ends up (this is what makes the pictures behave like annotated photos):

* jaw 0-16: the lower outline of the skin polygon (against background, neck or hair);
* brows 17-26: the *upper* edge of each brow shape (the brow thickens below the points);
* nose bridge 27-30: the ridge line, as the sharp edge of the shadow on one side of the nose,
  ending at the tip 30;
* nose base 31-35: the lower edge of the nose, against the shadow under it; nostrils sit just
  above 32 and 34, the alar creases end at 31 and 35;
* eyes 36-47: the eyelid contour, i.e. the edge of the eye opening (sclera, iris and pupil are
  clipped to it); the corners are the polygon corners; the dark lash line lies outside;
* outer lips 48-59: the lip outline against the skin;
* inner lips 60-67: the edge of the dark mouth opening (a thin seam when the mouth is shut).

Everything is drawn in the normalised face frame; sizes below are in face units (the
inter-ocular distance of the mean shape is 1) or, for the head, in half face-widths.
"""
from __future__ import annotations

import numpy as np

from landmarks.data.synthetic import geometry as g
from landmarks.data.synthetic.canvas import Canvas, ellipse_points, unit_circle
from landmarks.data.synthetic.params import FaceParams


def palette(params: FaceParams) -> dict[str, np.ndarray]:
    """Colours of the face parts, derived from the skin, hair and iris colours."""
    skin = np.asarray(params.skin)
    hair = np.asarray(params.hair)
    brow = np.minimum(0.7 * hair + 0.3 * 0.45 * skin, 0.6 * skin)
    return {
        "skin": skin, "neck": skin * 0.78, "ear": skin * 0.92, "ear_inner": skin * 0.68,
        "hair": hair, "brow": brow, "lash": 0.35 * hair + 0.03, "crease": skin * 0.8,
        "sclera": (0.95, 0.94, 0.91), "lid_shadow": (0.72, 0.68, 0.66),
        "iris": params.iris, "pupil": (0.04, 0.03, 0.03), "glint": (1.0, 1.0, 1.0),
        "nostril": skin * 0.28, "upper_lip": skin * np.array([0.80, 0.55, 0.55]) + np.array([0.05, 0.0, 0.01]),
        "lower_lip": skin * np.array([0.88, 0.64, 0.62]) + np.array([0.05, 0.0, 0.01]),
        "mouth": (0.22, 0.06, 0.07), "teeth": (0.92, 0.89, 0.80), "tongue": (0.70, 0.32, 0.34),
        "shirt": params.shirt,
    }


def head_coordinates(head: g.HeadFrame, points: np.ndarray) -> np.ndarray:
    """Face-frame points (..., 2) in the head frame (half-widths across and up)."""
    return (points - head.centre) @ np.stack([head.across, head.up], 1) / head.half_width


# ------------------------------------------------------------------ head, hair, body
def draw_back_hair(canvas: Canvas, head: g.HeadFrame, params: FaceParams, chin_y: float, colour) -> None:
    """Long hair behind the head, falling to the shoulders in two rounded locks."""
    v = params.hair_volume + 0.06
    dome = head.dome(v, params.cranium * v, 0.0, np.pi)
    left = g.spline(np.array([[-v, 0.0], [-v - 0.1, -1.0], [-v + 0.05, chin_y - 0.9], [-0.4, chin_y - 1.1]]), 4)
    fall = np.concatenate([left, left[::-1] * [-1, 1]])
    canvas.fill([np.concatenate([dome, head.points(fall)])], colour)


def draw_body(canvas: Canvas, shape: np.ndarray, head: g.HeadFrame, chin: np.ndarray, colours: dict) -> None:
    """Shoulders in a shirt, then the neck over them (its round bottom makes the neckline).

    The neck is drawn twice: all in shadow, then its lower part lit, below a line that
    follows the jaw 0.28 half-widths lower (the shadow the jaw casts).
    """
    nx, cy = 0.4 * chin[0], chin[1]
    side = np.array([[-3.6, cy - 4.5], [-3.2, cy - 1.8], [-2.2, cy - 0.95], [-0.8 + nx, cy - 0.65]])
    left = g.spline(side, 4)
    shoulders = np.concatenate([left, left[::-1] * [-1, 1] + [2 * nx, 0]])
    canvas.fill(head.points(shoulders), colours["shirt"])
    lower = np.array([[0.44, cy - 0.5], [0.5, cy - 0.75], [0.25, cy - 1.0], [0.0, cy - 1.05], [-0.25, cy - 1.0],
                      [-0.5, cy - 0.75], [-0.44, cy - 0.5]]) + [nx, 0]
    neck = np.concatenate([[[-0.42 + nx, -0.3], [0.42 + nx, -0.3]], lower])
    canvas.fill(head.points(neck), colours["neck"] * 0.8)
    jaw = head_coordinates(head, shape[3:14]) - [0.0, 0.28]
    jaw[:, 0] = np.clip(jaw[:, 0], -0.42 + nx, 0.42 + nx)
    lit = np.concatenate([jaw, lower])
    canvas.fill(head.points(lit), colours["neck"])


def draw_ears(canvas: Canvas, head: g.HeadFrame, yaw: float, colours: dict) -> None:
    """An ear on each side, pushed behind the cheek on the side the face turns to."""
    tilt = float(np.arctan2(head.across[1], head.across[0]))
    ears, rims = [], []
    for side in (-1.0, 1.0):
        out = 0.05 + 0.03 * max(0.0, -side * yaw) - 0.12 * max(0.0, side * yaw)
        centre = head.point(side * (1.0 + out), -0.3)
        axes = (0.14 * head.half_width, 0.32 * head.half_width)
        ears.append(ellipse_points(centre, axes, tilt + side * 0.12))
        rim = ellipse_points(centre + side * 0.02 * head.across, (axes[0] * 0.55, axes[1] * 0.65), tilt + side * 0.12)
        rims.append(np.concatenate([rim[20:], rim[:8]]) if side > 0 else rim[6:22])
    canvas.fill(ears, colours["ear"])
    canvas.stroke(rims, colours["ear_inner"], 0.02)


def draw_hair_cap(canvas: Canvas, head: g.HeadFrame, params: FaceParams, brow_top: float, colour) -> None:
    """Hair over the top of the head, down to a hairline safely above the brows."""
    v = params.hair_volume
    outer = head.dome(v, params.cranium * (1 + 1.3 * (v - 1)), 0.1, np.pi - 0.1)
    line = max(params.hairline, brow_top + 0.35)
    inner = head.dome(0.9, line, np.pi - 0.3, 0.3, flatness=0.6)
    canvas.fill([np.concatenate([outer, inner])], colour)


def draw_head(canvas: Canvas, shape: np.ndarray, params: FaceParams, colours: dict, samples: int) -> g.HeadFrame:
    """Everything but the inner features: hair, shoulders, neck, ears, skin. Returns the head frame."""
    head = g.HeadFrame(shape, turn=0.06 * params.yaw)
    chin = head_coordinates(head, shape[8])
    if params.hair_style == "long":
        draw_back_hair(canvas, head, params, chin[1], colours["hair"])
    draw_body(canvas, shape, head, chin, colours)
    if params.ears:
        draw_ears(canvas, head, params.yaw, colours)
    canvas.fill([g.face_outline(shape, head, params.cranium, samples)], colours["skin"])
    if params.hair_style != "none":
        draw_hair_cap(canvas, head, params, g.brow_top_height(shape, head), colours["hair"])
    return head


# ------------------------------------------------------------------ features
def draw_brows(canvas: Canvas, shape: np.ndarray, thickness: float, colour, samples: int) -> None:
    """Each brow: a band hanging below the curve through its five points, thickest at the inner end."""
    tops = g.spline(shape[[[17, 18, 19, 20, 21], [26, 25, 24, 23, 22]]], samples)  # outer -> inner end
    canvas.fill(g.shifted_band(tops, thickness * (0.35 + 0.65 * g.profile("rising", tops.shape[1]))), colour)


#: Eyes whose lids are closer than this (face units) are drawn shut: lash line only.
CLOSED_EYE = 0.01


def draw_eyes(canvas: Canvas, shape: np.ndarray, params: FaceParams, colours: dict, samples: int) -> None:
    """Crease and lashes around the lids, then sclera, iris and pupil clipped to the open eyes."""
    upper, lower = g.eye_openings(shape, samples)
    widths = np.hypot(*(shape[[39, 45]] - shape[[36, 42]]).T)[:, None, None]
    canvas.stroke(upper[:, 2:-1] - g.DOWN * (0.23 * widths), colours["crease"], 0.014)
    canvas.stroke(upper, colours["lash"], 0.035)
    canvas.stroke(lower, colours["crease"], 0.012)
    is_open = (shape[[41, 40, 47, 46], 1] - shape[[37, 38, 43, 44], 1]).reshape(2, 2).max(1) > CLOSED_EYE
    if is_open.any():
        draw_eyeballs(canvas, shape, params, colours, upper[is_open], lower[is_open], widths[is_open], is_open)


def draw_eyeballs(canvas: Canvas, shape: np.ndarray, params: FaceParams, colours: dict, upper: np.ndarray,
                  lower: np.ndarray, widths: np.ndarray, which: np.ndarray) -> None:
    """Sclera, iris, pupil, glint and the upper lid's shadow, clipped to the eye openings."""
    openings = np.concatenate([upper, lower[:, 1:-1]], axis=1)
    centres = shape[g.EYE_CENTRES[which]].mean(1) + np.asarray(params.gaze) * widths[:, 0]
    radii, circle = 0.21 * widths, unit_circle(20)
    canvas.fill_inside(openings, [
        (openings, colours["sclera"]),
        (centres[:, None] + radii * circle, colours["iris"]),
        (centres[:, None] + 0.45 * radii * circle, colours["pupil"]),
        (centres[:, None] + radii * (0.17 * circle + [0.3, -0.35]), colours["glint"]),
        (g.shifted_band(upper, 0.06 * widths[..., 0]), colours["lid_shadow"]),
    ])


def shadow_side(params: FaceParams) -> float:
    """+1 if the nose casts its side shadow to the image right, -1 to the left."""
    if abs(params.yaw) > 1.0:
        return -float(np.sign(params.yaw))
    return -1.0 if np.cos(params.light_angle) > 0 else 1.0


#: Alar crease (from the nostril wing 31 up and around), for the image-left side; mirrored for 35.
ALA_CREASE = np.array([[0.0, 0.0], [-0.035, -0.035], [-0.03, -0.085], [0.0, -0.115]])


def draw_nose(canvas: Canvas, shape: np.ndarray, side: float, colours: dict, samples: int) -> None:
    """Side shadow along the ridge 27-30, alar creases to 31 / 35, nostrils, shadow under the base 31-35."""
    skin = colours["skin"]
    ridge = g.spline(shape[27:31], samples)
    widths = side * (0.03 + 0.08 * g.profile("linear", len(ridge)))
    canvas.fill(g.shifted_band(ridge, widths, g.RIGHT), skin * 0.92)
    canvas.fill(g.shifted_band(ridge, 0.5 * widths, g.RIGHT), skin * 0.85)
    creases = np.stack([shape[31] + ALA_CREASE, shape[35] + ALA_CREASE * [-1, 1]])
    canvas.stroke(g.spline(creases, samples), skin * 0.7, 0.018)
    along = shape[33] - shape[31]
    angle = float(np.arctan2(along[1], along[0]))
    centres = (shape[[31, 35]] + 2 * shape[[32, 34]]) / 3 - [0.0, 0.02]
    nostril = ellipse_points(np.zeros(2), (0.035, 0.018), angle, n=16)
    canvas.fill(centres[:, None] + nostril, colours["nostril"])
    base = g.spline(shape[31:36], samples)
    taper = 0.05 * g.profile("arch", len(base))
    canvas.fill(g.shifted_band(base, taper), skin * 0.9)
    canvas.fill(g.shifted_band(base, 0.55 * taper), skin * 0.8)


def draw_mouth(canvas: Canvas, shape: np.ndarray, colours: dict, samples: int) -> None:
    """Upper and lower lip fills, the mouth opening (dark, with teeth and tongue) and the lip seam."""
    lips = g.lip_outlines(shape, samples)
    canvas.fill([np.concatenate([lips["outer_upper"], lips["outer_lower"][::-1]])], colours["upper_lip"])
    canvas.fill([np.concatenate([lips["inner_lower"], lips["outer_lower"][::-1]])], colours["lower_lip"])
    opening = np.concatenate([lips["inner_upper"], lips["inner_lower"][::-1][1:-1]])
    gap = float(shape[66, 1] - shape[62, 1])
    layers = [(opening, colours["mouth"])]
    if gap > 0.02:
        tongue_centre = shape[66] - [0.0, 0.2 * gap]
        layers.append((ellipse_points(tongue_centre, (0.16, 0.35 * gap), n=20), colours["tongue"]))
        layers.append((g.shifted_band(lips["inner_upper"], min(0.06, 0.45 * gap)), colours["teeth"]))
    canvas.fill_inside(opening, layers)
    seam = 0.5 * (lips["inner_upper"] + lips["inner_lower"])
    canvas.stroke(seam, colours["upper_lip"] * 0.45, 0.012)


def draw_face(canvas: Canvas, shape: np.ndarray, params: FaceParams, samples: int = 4) -> g.HeadFrame:
    """Draw the whole head for the (already deformed) ``shape``; returns its :class:`HeadFrame`."""
    colours = palette(params)
    head = draw_head(canvas, shape, params, colours, samples)
    draw_brows(canvas, shape, params.brow_thickness, colours["brow"], samples)
    draw_eyes(canvas, shape, params, colours, samples)
    draw_nose(canvas, shape, shadow_side(params), colours, samples)
    draw_mouth(canvas, shape, colours, samples)
    return head
