"""Named domains: the ranges from which the parameters of one synthetic face are drawn.

A :class:`Domain` is a frozen record of ranges; :func:`landmarks.data.synthetic.sample_face_params`
draws every factor uniformly from its range (``(lo, hi)`` pairs) unless the field says
otherwise. Four domains ship with the library, in :data:`DOMAINS`:

``studio``
    passport-like photos: plain or gradient backdrop, soft even light, near-frontal pose,
    no occluders, no blur, almost no noise.
``wild``
    snapshots: cluttered backgrounds, strong directional light, wide pose and framing,
    occluders (hands, sunglasses, masks, objects, hair), blur and sensor noise.
``lowlight``
    night shots: dark, low contrast, strong colour cast, heavy noise, a little blur.
``sketch``
    pencil drawings of studio faces on tinted paper.

Declare your own by copying one and changing what differs::

    from dataclasses import replace
    DOMAINS["foggy"] = replace(DOMAINS["wild"], name="foggy", contrast=(0.3, 0.5), exposure=(1.2, 1.4))
"""
from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]

#: Occluder kinds the renderer knows.
OCCLUDERS = ("sunglasses", "hand", "mask", "object", "hair")
#: Background kinds the renderer knows.
BACKGROUNDS = ("plain", "gradient", "clutter")
#: Rendering styles.
STYLES = ("photo", "sketch")


@dataclass(frozen=True)
class Domain:
    """Parameter ranges of one domain of synthetic faces.

    Pose and framing:
        yaw, pitch: coefficients ``b_0`` and ``b_1`` of the shape model (in standard deviations;
            ``|b| = 3`` is a strong turn / nod). identity_clip: the other coefficients are N(0, 1)
            clipped to this. roll_deg: in-plane rotation. face_size: inter-ocular distance
            of the mean shape as a fraction of the image side. face_offset: largest shift of
            the face centre from the image centre, as a fraction of the side, in x and in y.

    Expression (see :mod:`landmarks.data.synthetic.geometry`):
        mouth_open, smile, brow_raise, eye_open; blink_prob: chance of closed eyes.

    Scene:
        backgrounds: kinds to choose from; clutter: range of the number of background shapes.
        hair_prob: chance of hair (else bald). light_strength: directional part of the light
        (0: even light). exposure, contrast, gamma, saturation: camera response.
        colour_cast: largest deviation of the per-channel gains from 1.

    Degradations:
        occluder_prob: chance of at least one occluder (up to max_occluders) of the kinds in
        occluders. blur: Gaussian sigma in pixels *of a 128 px image* (scaled with the size).
        noise: standard deviation of additive Gaussian noise (image in [0, 1]).

    style: ``"photo"`` or ``"sketch"``.
    """

    name: str
    yaw: Range = (-1.2, 1.2)
    pitch: Range = (-1.0, 1.0)
    identity_clip: float = 2.0
    roll_deg: Range = (-6.0, 6.0)
    face_size: Range = (0.28, 0.34)
    face_offset: float = 0.02
    mouth_open: Range = (-1.0, 0.4)
    smile: Range = (0.0, 0.6)
    brow_raise: Range = (-0.3, 0.5)
    eye_open: Range = (0.8, 1.15)
    blink_prob: float = 0.02
    backgrounds: tuple[str, ...] = ("plain", "gradient")
    clutter: tuple[int, int] = (0, 0)
    hair_prob: float = 0.9
    light_strength: Range = (0.0, 0.25)
    exposure: Range = (0.95, 1.05)
    contrast: Range = (0.95, 1.05)
    gamma: Range = (0.95, 1.05)
    saturation: Range = (0.9, 1.1)
    colour_cast: float = 0.03
    occluder_prob: float = 0.0
    max_occluders: int = 1
    occluders: tuple[str, ...] = OCCLUDERS
    blur: Range = (0.0, 0.0)
    noise: Range = (0.0, 0.004)
    style: str = "photo"

    def __post_init__(self) -> None:
        unknown = [b for b in self.backgrounds if b not in BACKGROUNDS]
        unknown += [o for o in self.occluders if o not in OCCLUDERS]
        if unknown:
            raise ValueError(f"domain {self.name!r}: unknown kinds {unknown}")
        if self.style not in STYLES:
            raise ValueError(f"domain {self.name!r}: style must be one of {STYLES}, got {self.style!r}")


STUDIO = Domain(name="studio")

WILD = Domain(
    name="wild",
    yaw=(-3.0, 3.0), pitch=(-2.5, 2.5), identity_clip=3.0, roll_deg=(-30.0, 30.0),
    face_size=(0.24, 0.38), face_offset=0.07,
    mouth_open=(-1.0, 1.0), smile=(0.0, 1.0), brow_raise=(-1.0, 1.0), eye_open=(0.6, 1.3), blink_prob=0.06,
    backgrounds=("clutter",), clutter=(10, 30),
    light_strength=(0.3, 0.8), exposure=(0.7, 1.3), contrast=(0.75, 1.3), gamma=(0.8, 1.25),
    saturation=(0.6, 1.4), colour_cast=0.12,
    occluder_prob=0.6, max_occluders=2, blur=(0.0, 1.2), noise=(0.0, 0.04),
)

LOWLIGHT = Domain(
    name="lowlight",
    yaw=(-2.0, 2.0), pitch=(-1.5, 1.5), identity_clip=2.5, roll_deg=(-15.0, 15.0),
    face_size=(0.28, 0.38), face_offset=0.05,
    backgrounds=("gradient", "clutter"), clutter=(3, 12),
    light_strength=(0.3, 0.7), exposure=(0.3, 0.5), contrast=(0.6, 0.85), gamma=(1.0, 1.15),
    saturation=(0.4, 0.8), colour_cast=0.3,
    occluder_prob=0.15, blur=(0.3, 1.0), noise=(0.03, 0.07),
)

SKETCH = Domain(
    name="sketch",
    backgrounds=("plain", "gradient"), light_strength=(0.2, 0.4),
    saturation=(0.0, 0.0), colour_cast=0.0, noise=(0.0, 0.01), style="sketch",
)

#: The domains known by name to :class:`landmarks.data.synthetic.SyntheticFaces`; add your own.
DOMAINS: dict[str, Domain] = {d.name: d for d in (STUDIO, WILD, LOWLIGHT, SKETCH)}


def get_domain(domain: str | Domain) -> Domain:
    """A domain by name (see :data:`DOMAINS`) or the domain itself."""
    if isinstance(domain, Domain):
        return domain
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; known: {sorted(DOMAINS)} (or pass a Domain)")
    return DOMAINS[domain]
