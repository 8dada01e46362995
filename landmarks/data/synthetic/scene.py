"""Everything around the drawn face: backgrounds, light, camera response, sketch style, blur, noise.

Images are ``(S, S, 3)`` RGB, uint8 until the end of the photo pipeline (as a camera would
store them), then float32 in [0, 1] for the sketch style and the noise. All functions are
vectorised NumPy / OpenCV calls; smooth fields (backdrop gradients, light) are computed on a
coarse grid and upsampled bilinearly.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

#: Fewest samples in the bank of Gaussian noise that images take their noise from.
NOISE_BANK_MIN = 1 << 17
#: Rec. 601 luma weights.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
#: Side of the coarse grid smooth backdrops are computed on before bilinear upsampling.
COARSE = 8
#: Shading maps are stored as uint8 with this value meaning a gain of 1.
SHADE_ONE = 128.0


# ------------------------------------------------------------------ backgrounds
@lru_cache(maxsize=16)
def centred_coordinates(size: int) -> np.ndarray:
    """Pixel centres of a ``size``-pixel line mapped to [-1, 1], float32."""
    return (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0


def ramp(size: int, angle: float) -> np.ndarray:
    """``(S, S)`` float32 going linearly from -1 to 1 along direction ``angle`` (radians, y down)."""
    centred = centred_coordinates(size)
    c, s = np.float32(np.cos(angle) * 0.7071), np.float32(np.sin(angle) * 0.7071)
    return centred[None, :] * c + centred[:, None] * s


def to_uint8(image: np.ndarray, scale: float = 255.0) -> np.ndarray:
    """Float values times ``scale``, rounded and saturated to uint8."""
    return np.clip(image * scale + 0.5, 0, 255).astype(np.uint8)


def upsample(coarse: np.ndarray, size: int, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize a small map to ``size x size``."""
    return cv2.resize(coarse, (size, size), interpolation=interpolation)


def light_falloff(size: int, angle: float, strength: float) -> np.ndarray:
    """``(S, S)`` float32 gain of the background: brighter towards the light."""
    return 1.0 + np.float32(0.35 * strength) * ramp(size, angle)


def coarse_gradient(first, second, angle: float, light_angle: float, light_strength: float) -> np.ndarray:
    """``(COARSE, COARSE, 3)`` float backdrop fading from ``first`` to ``second``, lit from ``light_angle``."""
    t = 0.5 * (ramp(COARSE, angle) + 1.0)
    a, b = np.asarray(first, np.float32), np.asarray(second, np.float32)
    return (a + t[..., None] * (b - a)) * light_falloff(COARSE, light_angle, light_strength)[..., None]


def gradient_background(size: int, first, second, angle: float, light_angle: float = 0.0,
                        light_strength: float = 0.0) -> np.ndarray:
    """A uint8 backdrop fading from ``first`` to ``second`` (flat at the very border)."""
    return upsample(to_uint8(coarse_gradient(first, second, angle, light_angle, light_strength)), size)


def blotches(rng: np.random.Generator, size: int, cells: int = 4) -> np.ndarray:
    """Smooth random float32 colour field: a ``cells x cells`` grid of colours upsampled bicubically."""
    grid = rng.random((cells, cells, 3), dtype=np.float32)
    return np.clip(upsample(grid, size, cv2.INTER_CUBIC), 0.0, 1.0)


_SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def rotated(offsets: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Offsets ``(k, n, 2)`` each turned by its own angle ``(k,)``."""
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    x, y = offsets[..., 0], offsets[..., 1]
    return np.stack([x * c - y * s, x * s + y * c], -1)


def draw_clutter(rng: np.random.Generator, image: np.ndarray, count: int, scale: int | None = None) -> None:
    """Draw ``count`` random rectangles, ellipses, thick lines and triangles into a uint8 image.

    Shapes measure up to about a third of ``scale`` (default: the image side).
    """
    size, scale = image.shape[0], scale or image.shape[0]
    values = rng.random((count, 12))
    kinds, colours = values[:, 0].tolist(), (values[:, 1:4] * 255).tolist()
    centres = values[:, 4:6] * size
    half = (0.025 + 0.175 * values[:, 6:8]) * scale
    angles = values[:, 8] * np.pi
    fixed = lambda p: np.rint(p * 16).astype(np.int32)  # noqa: E731
    rectangles = fixed(centres[:, None] + rotated(_SQUARE * half[:, None], angles))
    triangles = fixed(centres[:, None] + (values[:, 9:12, None] - 0.5) * [1.0, -1.0] * half[:, None] * 3)
    ends = (centres + np.stack([np.cos(angles), np.sin(angles)], 1) * half[:, :1] * 2).astype(int).tolist()
    centres_i, half_i = centres.astype(int).tolist(), half.astype(int).tolist()
    widths = np.maximum(1, (half[:, 1] / 4).astype(int)).tolist()
    degrees = np.degrees(angles).tolist()
    for k, kind in enumerate(kinds):
        if kind < 0.3:
            cv2.fillPoly(image, [rectangles[k]], colours[k], cv2.LINE_AA, 4)
        elif kind < 0.6:
            cv2.ellipse(image, centres_i[k], half_i[k], degrees[k], 0, 360, colours[k], -1, cv2.LINE_AA)
        elif kind < 0.8:
            cv2.line(image, centres_i[k], ends[k], colours[k], widths[k], cv2.LINE_AA)
        else:
            cv2.fillPoly(image, [triangles[k]], colours[k], cv2.LINE_AA, 4)


def fresh_clutter(rng: np.random.Generator, size: int, first, second, count: int, light_angle: float = 0.0,
                  light_strength: float = 0.0, scale: int | None = None) -> np.ndarray:
    """A newly drawn mess (uint8): blotchy lit colour field and ``count`` random shapes."""
    blotch = rng.random((COARSE, COARSE, 3), dtype=np.float32)
    base = 0.5 * blotch + 0.5 * coarse_gradient(first, second, rng.uniform(0, 2 * np.pi), light_angle, light_strength)
    canvas = upsample(to_uint8(base), size)
    draw_clutter(rng, canvas, count, scale)
    return canvas


#: Pre-drawn clutter textures per image size; larger images draw their clutter afresh.
CLUTTER_TEXTURES, CLUTTER_LIBRARY_MAX_SIZE, CLUTTER_LIBRARY_SEED = 32, 256, 20240612


@lru_cache(maxsize=2)
def clutter_library(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``CLUTTER_TEXTURES`` clutter images of side ``2 * size`` (uint8) and their shape densities.

    Texture ``k`` holds ``4 * density[k]`` shapes, so a ``size x size`` crop shows about
    ``density[k]`` of them. Drawn once per process from a fixed seed.
    """
    rng = np.random.default_rng(CLUTTER_LIBRARY_SEED)
    densities = np.round(np.linspace(2, 32, CLUTTER_TEXTURES)).astype(int)
    textures = [fresh_clutter(rng, 2 * size, rng.random(3), rng.random(3), 4 * d, scale=size) for d in densities]
    return np.stack(textures), densities


def clutter_background(rng: np.random.Generator, size: int, first, second, count: int, light_angle: float = 0.0,
                       light_strength: float = 0.0) -> np.ndarray:
    """An indoor / outdoor-like mess (uint8) with about ``count`` shapes, recoloured towards
    ``first`` and ``second``, defocused behind half the faces.

    For speed it is a random crop of a pre-drawn texture of about that density
    (:func:`clutter_library`) passed through a random colour map; above
    ``CLUTTER_LIBRARY_MAX_SIZE`` pixels it is drawn afresh.
    """
    if size > CLUTTER_LIBRARY_MAX_SIZE:
        image = fresh_clutter(rng, size, first, second, count, light_angle, light_strength)
    else:
        textures, densities = clutter_library(size)
        nearest = np.argsort(np.abs(densities - count) + rng.random(len(densities)))[0]
        y, x = rng.integers(0, size + 1, 2)
        image = cv2.transform(textures[nearest, y:y + size, x:x + size], random_colour_map(rng, first, second))
    sigma = rng.uniform(0.0, 1.2)
    return blur(image, sigma * size / 128) if sigma > 0.6 else image


def random_colour_map(rng: np.random.Generator, first, second) -> np.ndarray:
    """A 3 x 4 uint8 colour map: shuffled, rescaled channels pulled towards the mean of two colours."""
    mixing = np.eye(3)[rng.permutation(3)] * rng.uniform(0.75, 1.2, (3, 1))
    pull = rng.uniform(0.1, 0.3)
    target = 0.5 * (np.asarray(first) + np.asarray(second)) * 255.0 * pull
    return np.concatenate([(1.0 - pull) * mixing, target[:, None]], 1)


def background(kind: str, rng: np.random.Generator, size: int, colours, clutter: int, light_angle: float = 0.0,
               light_strength: float = 0.0) -> np.ndarray:
    """The uint8 backdrop of one face: ``"plain"``, ``"gradient"`` or ``"clutter"``, lit from ``light_angle``."""
    first, second = colours
    if kind == "clutter":
        return clutter_background(rng, size, first, second, clutter, light_angle, light_strength)
    if kind == "plain":
        second = first
    return gradient_background(size, first, second, rng.uniform(0, 2 * np.pi), light_angle, light_strength)


# ------------------------------------------------------------------ light
def ellipsoid_shading(points: np.ndarray, centre: np.ndarray, axes: np.ndarray, light: np.ndarray,
                      strength: float) -> np.ndarray:
    """Shading of an ellipsoidal head at image ``points`` (..., 2).

    ``axes`` (2, 2) holds the semi-axis vectors of the head's outline in the image (rows);
    ``light`` is the unit image-plane direction the light comes from. The result darkens
    towards the silhouette (to 0.7) and by ``strength`` on the side away from the light.
    """
    (a, b), (c, d) = axes
    inverse = np.array([[d, -b], [-c, a]]) / (a * d - b * c)
    q = (points - centre) @ inverse
    r2 = np.sum(q * q, axis=-1)
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    towards_light = axes @ light / np.sqrt(np.sum(axes * axes, axis=1))
    directional = 1.0 + strength * (q @ towards_light) / np.sqrt(np.maximum(r2, 1.0))
    return np.clip((0.7 + 0.3 * nz) * directional, 0.05, None)


def socket_shading(xs: np.ndarray, eyes: np.ndarray, radius: float) -> np.ndarray:
    """Soft darkening (down to 0.85) around each eye centre of ``eyes`` (k, 2) on the square grid
    with pixel-centre coordinates ``xs`` along each axis (a sum of separable Gaussians)."""
    across = np.exp(-(((xs - eyes[:, :1]) / radius) ** 2))
    down = np.exp(-(((xs - eyes[:, 1:]) / radius) ** 2))
    return 1.0 - 0.15 * down.T @ across


@lru_cache(maxsize=8)
def coarse_pixel_centres(size: int, low: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of a ``low x low`` grid over a ``size x size`` image, in its pixels: along one axis
    ``(low,)`` and as points ``(low, low, 2)``."""
    coords = (np.arange(low) + 0.5) * (size / low)
    return coords, np.stack(np.meshgrid(coords, coords), -1)


def shading_map(size: int, centre: np.ndarray, axes: np.ndarray, eyes: np.ndarray, eye_radius: float,
                light: np.ndarray, strength: float) -> np.ndarray:
    """``(S, S, 3)`` uint8 gain of the foreground (:data:`SHADE_ONE` = 1), computed coarse and upsampled."""
    coords, points = coarse_pixel_centres(size, max(16, size // 8))
    shade = ellipsoid_shading(points, centre, axes, light, strength) * socket_shading(coords, eyes, eye_radius)
    return upsample(cv2.cvtColor(to_uint8(shade, SHADE_ONE), cv2.COLOR_GRAY2RGB), size)


# ------------------------------------------------------------------ camera
#: ``[I | 0]`` and ``[1 luma^T | 0]``: the identity and the "grey" colour maps as 3 x 4 affine matrices.
_IDENTITY = np.eye(3, 4)
_GREY = np.concatenate([np.outer(np.ones(3), LUMA), np.zeros((3, 1))], 1)
_OFFSET = np.array([[0.0, 0.0, 0.0, 1.0]] * 3)


def colour_matrix(exposure: float, contrast: float, saturation: float, cast, white: float = 1.0) -> np.ndarray:
    """The 3 x 4 affine colour map: exposure, contrast about mid-grey, saturation, per-channel cast.

    ``white`` is the value of white (1 for float images, 255 for uint8).
    """
    gain = contrast * exposure
    mixed = (saturation * gain) * _IDENTITY + ((1.0 - saturation) * gain) * _GREY
    mixed += ((1.0 - contrast) * 0.5 * exposure * white) * _OFFSET
    return mixed * np.asarray(cast)[:, None]


@lru_cache(maxsize=256)
def gamma_table(gamma: float) -> np.ndarray:
    """The 256-entry uint8 lookup table of ``x -> x ** gamma``."""
    return to_uint8((np.arange(256) / 255.0) ** gamma)


def camera_response(image: np.ndarray, exposure: float, contrast: float, gamma: float, saturation: float,
                    cast) -> np.ndarray:
    """Apply :func:`colour_matrix` then the gamma curve to a uint8 image (saturating)."""
    out = cv2.transform(image, colour_matrix(exposure, contrast, saturation, cast, 255.0))
    return cv2.LUT(out, gamma_table(round(gamma, 3))) if abs(gamma - 1.0) > 0.005 else out


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 image to float32 in [0, 1]."""
    return np.multiply(image, np.float32(1.0 / 255.0), dtype=np.float32)


def to_float_channels_first(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` image to a contiguous float32 ``(3, H, W)`` array in [0, 1], in one pass."""
    return np.multiply(image.transpose(2, 0, 1), np.float32(1.0 / 255.0), dtype=np.float32, order="C")


def pencil_sketch(image: np.ndarray, paper, size: int) -> np.ndarray:
    """A pencil drawing of a float ``image`` on ``paper``-coloured paper.

    Strokes appear where a pixel is darker than its neighbourhood ("colour dodge": grey divided
    by its blurred self); deviations under 2 % are ignored so flat shading leaves no marks.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    local = cv2.GaussianBlur(grey, (0, 0), 1.6 * size / 128)
    darkness = np.clip((1.0 - grey / (local + 1e-3) - 0.02) * 5.0, 0.0, 1.0)
    strokes = (1.0 - darkness) * (0.85 + 0.15 * grey)
    return cv2.cvtColor(strokes, cv2.COLOR_GRAY2RGB) * np.asarray(paper, np.float32)


@lru_cache(maxsize=64)
def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised 1-D Gaussian kernel reaching 2.5 sigma on each side."""
    radius = max(1, int(np.ceil(2.5 * sigma)))
    return cv2.getGaussianKernel(2 * radius + 1, sigma)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with ``sigma`` pixels (skipped below 0.1; sigma rounded to 0.05)."""
    if sigma <= 0.1:
        return image
    kernel = gaussian_kernel(round(sigma * 20) / 20)
    return cv2.sepFilter2D(image, -1, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)


@lru_cache(maxsize=4)
def noise_bank(length: int) -> np.ndarray:
    """A fixed flat array of ``length`` standard Gaussian samples that images take their noise from."""
    return np.random.default_rng(20240611).standard_normal(length, dtype=np.float32)


def gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard Gaussian noise of ``shape``: a contiguous run of :func:`noise_bank` at a random offset.

    The bank holds at least ``NOISE_BANK_MIN`` samples and twice what one image needs (a power
    of two), small enough to stay in cache: images get shifted copies of the same field, which
    is immaterial for training and far faster than fresh samples.
    """
    count = int(np.prod(shape))
    bank = noise_bank(max(NOISE_BANK_MIN, 1 << int(np.ceil(np.log2(2 * count)))))
    start = int(rng.integers(0, bank.size - count + 1))
    return bank[start:start + count].reshape(shape)


def add_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add Gaussian noise of standard deviation ``sigma`` to a contiguous float image (skipped when 0)."""
    if sigma <= 0:
        return image
    flat = image.reshape(-1, image.shape[-1])
    return cv2.scaleAdd(gaussian_noise(rng, flat.shape), float(sigma), flat).reshape(image.shape)
