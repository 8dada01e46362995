"""The parameters of one synthetic face, and how a domain draws them.

:class:`FaceParams` holds every factor of variation; :func:`render_face` is a pure function of
it. To show the effect of one factor, draw a face and change that field only::

    params = sample_face_params(np.random.default_rng(0), "studio")
    row = [render_face(replace(params, yaw=b), 128) for b in (-3, -1.5, 0, 1.5, 3)]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from landmarks.data.synthetic.domains import Domain, get_domain

Colour = tuple[float, float, float]

#: Skin tones from light to dark (RGB in [0, 1]); faces interpolate between neighbours.
SKIN_TONES = np.array([
    (0.98, 0.84, 0.74), (0.94, 0.76, 0.63), (0.87, 0.66, 0.52), (0.76, 0.55, 0.40),
    (0.62, 0.43, 0.30), (0.47, 0.31, 0.21), (0.34, 0.22, 0.15),
])
HAIR_COLOURS = np.array([
    (0.07, 0.05, 0.04), (0.18, 0.11, 0.07), (0.35, 0.22, 0.12), (0.55, 0.38, 0.20),
    (0.82, 0.68, 0.42), (0.58, 0.25, 0.10), (0.62, 0.60, 0.58),
])
IRIS_COLOURS = np.array([
    (0.30, 0.17, 0.08), (0.16, 0.10, 0.06), (0.30, 0.45, 0.62), (0.33, 0.42, 0.26), (0.45, 0.35, 0.18),
])
STUDIO_BACKDROPS = np.array([
    (0.85, 0.85, 0.85), (0.70, 0.72, 0.75), (0.62, 0.72, 0.82), (0.85, 0.80, 0.70),
    (0.45, 0.47, 0.50), (0.93, 0.93, 0.90), (0.55, 0.65, 0.58),
])
HAIR_STYLES = ("short", "long", "none")


@dataclass(frozen=True)
class Occluder:
    """Something in front of the face.

    ``kind`` is one of :data:`landmarks.data.synthetic.domains.OCCLUDERS`. ``anchor`` is a face-frame
    offset from a landmark: from the lower lip (57) to the fingertips for ``"hand"``, from the
    nose tip (30) to the centre for ``"object"``, sideways from the nose bridge (27) for
    ``"hair"`` (sunglasses and masks sit where they belong). ``size`` is in face units,
    ``angle`` in radians, ``colour`` RGB in [0, 1], ``shape`` a variant (0 or 1: round or
    square lenses / objects, the side of a hand's thumb).
    """

    kind: str
    colour: Colour
    anchor: tuple[float, float] = (0.0, 0.0)
    size: float = 0.5
    angle: float = 0.0
    shape: int = 0


@dataclass(frozen=True, eq=False)
class FaceParams:
    """Every factor of one synthetic face; see the field groups below.

    Geometry: ``identity`` (K,) shape-model coefficients (entries 0 and 1 are replaced by
    ``yaw`` and ``pitch``), ``roll_deg`` in-plane rotation (positive: clockwise on screen),
    ``face_size`` inter-ocular distance / image side, ``offset`` face-centre shift / image side.
    Expression: ``mouth_open``, ``smile``, ``brow_raise``, ``eye_open`` (see
    :mod:`landmarks.data.synthetic.geometry`), ``gaze`` iris shift in eye widths.
    Appearance: colours in RGB [0, 1], ``hair_style`` in :data:`HAIR_STYLES`, ``hair_volume``
    (outer size of the hair, in half face-widths), ``hairline`` (height of the hairline above
    the ears, in half face-widths), ``cranium`` (height of the skull), ``ears``,
    ``brow_thickness`` (face units).
    Scene and camera: ``background`` kind with two colours and a ``clutter`` count,
    ``light_angle`` (radians, direction the light comes *from*, in the image plane),
    ``light_strength``, ``exposure``, ``contrast``, ``gamma``, ``saturation``, ``cast``
    (per-channel gains), ``blur`` (sigma in pixels of a 128 px image), ``noise`` (sigma),
    ``occluders``, ``style``, and ``seed`` for the random detail (background clutter, noise).
    """

    identity: np.ndarray
    yaw: float = 0.0
    pitch: float = 0.0
    roll_deg: float = 0.0
    face_size: float = 0.36
    offset: tuple[float, float] = (0.0, 0.0)
    mouth_open: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0
    eye_open: float = 1.0
    gaze: tuple[float, float] = (0.0, 0.0)
    skin: Colour = (0.87, 0.66, 0.52)
    hair: Colour = (0.18, 0.11, 0.07)
    iris: Colour = (0.30, 0.17, 0.08)
    shirt: Colour = (0.20, 0.30, 0.50)
    hair_style: str = "short"
    hair_volume: float = 1.12
    hairline: float = 1.0
    cranium: float = 1.3
    ears: bool = True
    brow_thickness: float = 0.055
    background: str = "plain"
    background_colours: tuple[Colour, Colour] = ((0.8, 0.8, 0.8), (0.6, 0.6, 0.6))
    clutter: int = 0
    light_angle: float = 2.4
    light_strength: float = 0.15
    exposure: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    saturation: float = 1.0
    cast: Colour = (1.0, 1.0, 1.0)
    blur: float = 0.0
    noise: float = 0.0
    occluders: tuple[Occluder, ...] = field(default_factory=tuple)
    style: str = "photo"
    seed: int = 0

    @property
    def shape_coefficients(self) -> np.ndarray:
        """The coefficients ``b`` of the shape model: ``identity`` with yaw and pitch in place."""
        b = np.array(self.identity, dtype=np.float64)
        b[0], b[1] = self.yaw, self.pitch
        return b


class Draws:
    """Uniform numbers in [0, 1) drawn from ``rng`` in blocks and handed out one at a time.

    One generator call per block instead of one per factor keeps sampling cheap.
    """

    def __init__(self, rng: np.random.Generator, block: int = 32) -> None:
        self.rng, self.block = rng, block
        self.values: list[float] = []

    def unit(self) -> float:
        """The next uniform number."""
        if not self.values:
            self.values = self.rng.random(self.block).tolist()[::-1]
        return self.values.pop()

    def between(self, bounds: tuple[float, float]) -> float:
        """Uniform in ``[lo, hi]`` (exactly ``lo`` when the range is empty)."""
        lo, hi = bounds
        return lo + (hi - lo) * self.unit()

    def symmetric(self, half_width: float) -> float:
        """Uniform in ``[-half_width, half_width]``."""
        return half_width * (2.0 * self.unit() - 1.0)

    def chance(self, probability: float) -> bool:
        """True with ``probability``."""
        return self.unit() < probability

    def pick(self, options):
        """One of ``options``, uniformly."""
        return options[min(int(self.unit() * len(options)), len(options) - 1)]

    def colour(self, low: float = 0.05, high: float = 0.95) -> Colour:
        """A random RGB colour with channels in ``[low, high]``."""
        return (self.between((low, high)), self.between((low, high)), self.between((low, high)))

    def palette_colour(self, palette: np.ndarray, jitter: float = 0.03) -> Colour:
        """A colour between two neighbouring palette entries, slightly jittered."""
        t = self.unit() * (len(palette) - 1)
        i = min(int(t), len(palette) - 2)
        mixed = palette[i] + (t - i) * (palette[i + 1] - palette[i])
        return tuple(min(max(float(c) + self.symmetric(jitter), 0.0), 1.0) for c in mixed)


def _sample_occluder(draw: Draws, kinds: tuple[str, ...], skin: Colour, hair: Colour) -> Occluder:
    kind = draw.pick(kinds)
    if kind == "sunglasses":
        base = draw.between((0.02, 0.25))
        tint = (base, base * draw.between((0.8, 1.2)), base * draw.between((0.8, 1.4)))
        return Occluder(kind, tint, size=draw.between((0.22, 0.28)), shape=int(draw.chance(0.5)))
    if kind == "hand":
        tone = skin if draw.chance(0.6) else draw.palette_colour(SKIN_TONES)
        anchor = (draw.symmetric(0.5), draw.between((0.1, 0.9)))
        return Occluder(kind, tone, anchor, draw.between((0.35, 0.5)), draw.symmetric(0.6), int(draw.chance(0.5)))
    if kind == "mask":
        colours = [(0.62, 0.78, 0.9), (0.95, 0.95, 0.95), (0.12, 0.12, 0.14), draw.colour()]
        return Occluder(kind, draw.pick(colours))
    if kind == "hair":
        side = 1.0 if draw.chance(0.5) else -1.0
        return Occluder(kind, hair, (side * draw.between((0.1, 0.45)), -0.5), draw.between((0.18, 0.32)))
    anchor = (draw.symmetric(0.9), draw.between((-0.6, 0.9)))
    return Occluder("object", draw.colour(), anchor, draw.between((0.25, 0.6)), draw.between((0.0, np.pi)),
                    int(draw.chance(0.5)))


def _sample_occluders(draw: Draws, domain: Domain, skin: Colour, hair: Colour) -> tuple[Occluder, ...]:
    if domain.occluder_prob <= 0 or not draw.chance(domain.occluder_prob):
        return ()
    count = 1 + min(int(draw.unit() * domain.max_occluders), domain.max_occluders - 1)
    return tuple(_sample_occluder(draw, domain.occluders, skin, hair) for _ in range(count))


def _sample_background(draw: Draws, domain: Domain) -> dict:
    kind = draw.pick(domain.backgrounds)
    if kind == "clutter":
        colours = (draw.colour(), draw.colour())
        count = domain.clutter[0] + min(int(draw.unit() * (domain.clutter[1] - domain.clutter[0] + 1)),
                                        domain.clutter[1] - domain.clutter[0])
        return dict(background=kind, background_colours=colours, clutter=count)
    first = draw.palette_colour(STUDIO_BACKDROPS, 0.05)
    darker = draw.between((0.7, 1.1))
    second = tuple(min(c * darker, 1.0) for c in first)
    return dict(background=kind, background_colours=(first, second), clutter=0)


#: Factors drawn uniformly from the domain's range of the same name.
DOMAIN_RANGES = ("yaw", "pitch", "roll_deg", "face_size", "mouth_open", "smile", "brow_raise", "eye_open",
                 "light_strength", "exposure", "contrast", "gamma", "saturation", "blur", "noise")
#: Factors drawn uniformly from a fixed range, whatever the domain.
FIXED_RANGES = {"hair_volume": (1.06, 1.22), "hairline": (0.85, 1.1), "cranium": (1.22, 1.38),
                "brow_thickness": (0.04, 0.07), "light_angle": (0.0, 2 * np.pi),
                "gaze_x": (-0.08, 0.08), "gaze_y": (-0.08, 0.08)}


@lru_cache(maxsize=64)
def factor_bounds(domain: Domain) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Names and lower / upper bounds of all uniformly drawn scalar factors of ``domain``."""
    offset, cast = (-domain.face_offset, domain.face_offset), (1.0 - domain.colour_cast, 1.0 + domain.colour_cast)
    extra = {"offset_x": offset, "offset_y": offset, "cast_r": cast, "cast_g": cast, "cast_b": cast}
    bounds = {**{name: getattr(domain, name) for name in DOMAIN_RANGES}, **FIXED_RANGES, **extra}
    low, high = np.array(list(bounds.values()), dtype=np.float64).T
    return tuple(bounds), low, high


def _sample_scalars(rng: np.random.Generator, domain: Domain) -> dict:
    """All uniformly drawn scalar factors at once, grouped back into the fields of :class:`FaceParams`."""
    names, low, high = factor_bounds(domain)
    values = dict(zip(names, (low + (high - low) * rng.random(len(names))).tolist()))
    values["offset"] = (values.pop("offset_x"), values.pop("offset_y"))
    values["gaze"] = (values.pop("gaze_x"), values.pop("gaze_y"))
    values["cast"] = (values.pop("cast_r"), values.pop("cast_g"), values.pop("cast_b"))
    return values


def _sample_identity(rng: np.random.Generator, domain: Domain, num_modes: int) -> np.ndarray:
    identity = np.clip(rng.standard_normal(num_modes), -domain.identity_clip, domain.identity_clip)
    identity[:2] = 0.0  # yaw and pitch are separate factors
    return identity


def _sample_looks(draw: Draws, domain: Domain) -> dict:
    hair_style = draw.pick(HAIR_STYLES[:2]) if draw.chance(domain.hair_prob) else "none"
    return dict(
        skin=draw.palette_colour(SKIN_TONES), hair=draw.palette_colour(HAIR_COLOURS, 0.02),
        iris=draw.palette_colour(IRIS_COLOURS), shirt=draw.colour(), hair_style=hair_style,
        ears=draw.chance(0.85),
    )


def sample_face_params(rng: np.random.Generator, domain: str | Domain = "studio", num_modes: int = 30) -> FaceParams:
    """Draw every factor of one face from the ranges of ``domain`` (a name or a :class:`Domain`)."""
    domain = get_domain(domain)
    draw = Draws(rng)
    values = _sample_scalars(rng, domain)
    values["identity"] = _sample_identity(rng, domain, num_modes)
    if draw.chance(domain.blink_prob):
        values["eye_open"] = 0.0
    values.update(_sample_looks(draw, domain))
    values.update(_sample_background(draw, domain))
    values["occluders"] = _sample_occluders(draw, domain, values["skin"], values["hair"])
    values.update(style=domain.style, seed=int(rng.integers(2**31)))
    return FaceParams(**values)
