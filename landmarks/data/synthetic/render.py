"""From :class:`FaceParams` to an image with its 68 landmarks: :func:`render_face`."""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from landmarks.data.coords import apply_affine
from landmarks.data.shape_model import ShapeModel, default_shape_model, similarity_matrix
from landmarks.data.synthetic import geometry as g
from landmarks.data.synthetic import scene
from landmarks.data.synthetic.canvas import Canvas
from landmarks.data.synthetic.face import draw_face
from landmarks.data.synthetic.occluders import draw_occluders
from landmarks.data.synthetic.params import FaceParams

#: The face-frame point put at the image centre (the middle of the mean shape's landmark box).
FACE_ANCHOR = np.array([0.0, 0.08])


class RenderedFace(NamedTuple):
    """``image`` (S, S, 3) float32 RGB in [0, 1] (a view of channel-first memory, so
    ``image.transpose(2, 0, 1)`` is contiguous); ``landmarks`` (68, 2) float32 in the library's
    pixel coordinates; ``visible`` (68,) bool, False where an occluder covers the point or the
    point falls outside the image."""

    image: np.ndarray
    landmarks: np.ndarray
    visible: np.ndarray


def face_shape(params: FaceParams, model: ShapeModel | None = None) -> np.ndarray:
    """The face-frame shape of ``params``: identity and pose from the model, then the expression."""
    model = model or default_shape_model()
    shape = model.sample(params.shape_coefficients[: model.num_modes])
    return g.apply_expression(shape, params.mouth_open, params.smile, params.brow_raise, params.eye_open)


def placement_matrix(params: FaceParams, size: int) -> np.ndarray:
    """The 2 x 3 map from the face frame to pixels: scale, roll, and the anchor moved to the (shifted) centre."""
    centre = size * (0.5 + np.asarray(params.offset))
    matrix = similarity_matrix(params.face_size * size, params.roll_deg, (0.0, 0.0))
    matrix[:, 2] = centre - matrix[:, :2] @ FACE_ANCHOR
    return matrix


def curve_samples(size: int) -> int:
    """Spline points per landmark interval, more for larger images."""
    return max(3, int(round(size / 32)))


def foreground_shading(params: FaceParams, placement: np.ndarray, head: g.HeadFrame, shape: np.ndarray,
                       size: int) -> np.ndarray:
    """The light on the head (an ellipsoid over the face) with darker eye sockets, ``(S, S, 3)`` uint8."""
    linear = placement[:, :2]
    centre = apply_affine(placement, head.points(np.array([0.0, -0.13])))
    axes = (head.half_width * np.array([[1.05], [1.45]])) * (np.stack([head.across, head.up]) @ linear.T)
    eyes = apply_affine(placement, shape[g.EYE_CENTRES].mean(1))
    light = np.array([np.cos(params.light_angle), np.sin(params.light_angle)])
    radius = 0.22 * params.face_size * size
    return scene.shading_map(size, centre, axes, eyes, radius, light, params.light_strength)


def lit_foreground(canvas: Canvas, shading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The drawn foreground times its shading, and ``255 * (1 - coverage)`` left to the background (uint8, 3 channels)."""
    rgba = canvas.resolve()
    colour = cv2.multiply(cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), shading, scale=1 / scene.SHADE_ONE)
    uncovered = cv2.bitwise_not(cv2.extractChannel(rgba, 3))
    return colour, cv2.cvtColor(uncovered, cv2.COLOR_GRAY2RGB)


def photograph(params: FaceParams, canvas: Canvas, shading: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The uint8 photo: lit foreground over the background, through the camera response."""
    colour, uncovered = lit_foreground(canvas, shading)
    back = scene.background(params.background, rng, canvas.size, params.background_colours, params.clutter,
                            params.light_angle, params.light_strength)
    image = cv2.add(colour, cv2.multiply(back, uncovered, scale=1 / 255))
    return scene.camera_response(image, params.exposure, params.contrast, params.gamma, params.saturation, params.cast)


def compose(params: FaceParams, canvas: Canvas, shading: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The final float32 image, channels first ``(3, S, S)``: the photo (or its pencil sketch),
    blurred, with noise, in [0, 1]."""
    size = canvas.size
    photo = photograph(params, canvas, shading, rng)
    sigma = params.blur * size / 128
    if params.style == "sketch":
        paper = 1.0 - rng.uniform(0.0, 0.08, 3) * np.array([0.3, 0.6, 1.0])
        sketch = scene.blur(scene.pencil_sketch(scene.to_float(photo), paper, size), sigma)
        image = np.ascontiguousarray(sketch.transpose(2, 0, 1))
    else:
        image = scene.to_float_channels_first(scene.blur(photo, sigma))
    image = scene.add_noise(image, rng, params.noise)
    return np.clip(image, 0.0, 1.0, out=image)


def render_face(params: FaceParams, size: int = 128, model: ShapeModel | None = None) -> RenderedFace:
    """Render the face described by ``params`` on a ``size x size`` image.

    The landmarks are where the drawing puts the corresponding boundaries (see
    :mod:`landmarks.data.synthetic.face`): without bias, and within a quarter pixel for any single
    edge (about 0.1 pixel typically; see :mod:`landmarks.data.synthetic.canvas`).
    """
    shape = face_shape(params, model)
    placement = placement_matrix(params, size)
    canvas = Canvas(size, placement)
    head = draw_face(canvas, shape, params, curve_samples(size))
    draw_occluders(canvas, shape, params.occluders)
    landmarks = apply_affine(placement, shape)
    inside = np.all((landmarks >= 0) & (landmarks <= size), axis=1)
    visible = inside & ~canvas.occluded(landmarks)
    shading = foreground_shading(params, placement, head, shape, size)
    image = compose(params, canvas, shading, np.random.default_rng(params.seed))
    return RenderedFace(image.transpose(1, 2, 0), landmarks.astype(np.float32), visible)
