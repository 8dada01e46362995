"""Landmark layouts: which point is which, how points mirror, how a face is normalised.

A :class:`Layout` describes one annotation scheme (300W-68, WFLW-98, COFW-29, AFLW-19 or a
layout you declare yourself). Indices are 0-based throughout. "Left" and "right" in group
names mean *image* left and right (the subject's right eye is on the image left).

Conversions between layouts are linear maps: a matrix ``W`` of shape ``(M, N)`` turns
``(..., N, 2)`` landmarks into ``(..., M, 2)`` ones. Most rows pick one point; a few average
several (an eye centre from the eye contour), which an index list cannot express.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import torch

Pairs = Sequence[tuple[int, int]]


def _mirror_permutation(num_points: int, pairs: Pairs) -> tuple[int, ...]:
    """Permutation that relabels points after a horizontal flip; unpaired points map to themselves."""
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _chain(indices: Sequence[int], closed: bool = False) -> list[tuple[int, int]]:
    edges = [(indices[k], indices[k + 1]) for k in range(len(indices) - 1)]
    if closed:
        edges.append((indices[-1], indices[0]))
    return edges


@dataclass(frozen=True)
class Layout:
    """One landmark scheme.

    Args:
        name: short name, e.g. ``"300w"``.
        num_points: number of landmarks N.
        groups: named index groups (``"jaw"``, ``"left_eye"``, ...), used for drawing and colours.
        flip_pairs: pairs of points that swap under a horizontal flip.
        edges: point pairs joined by a line when the layout is drawn.
        outer_eye_corners: the two points whose distance is the inter-ocular distance.
        pupils: either two point indices (the pupils are annotated) or two groups whose
            centroids are the pupils (300W).
        default_norm: the normalisation the benchmark uses: ``"inter-ocular"`` or ``"box-size"``.
    """

    name: str
    num_points: int
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    flip_pairs: tuple[tuple[int, int], ...] = ()
    edges: tuple[tuple[int, int], ...] = ()
    outer_eye_corners: tuple[int, int] | None = None
    pupils: tuple[int, int] | tuple[tuple[int, ...], tuple[int, ...]] | None = None
    default_norm: str = "inter-ocular"

    def __post_init__(self) -> None:
        used = [i for g in self.groups.values() for i in g] + [i for p in self.flip_pairs for i in p]
        used += [i for e in self.edges for i in e] + list(self.outer_eye_corners or ())
        bad = [i for i in used if not 0 <= i < self.num_points]
        if bad:
            raise ValueError(f"layout {self.name!r}: indices {sorted(set(bad))} outside 0..{self.num_points - 1}")
        if self.default_norm not in ("inter-ocular", "inter-pupil", "box-size", "box-diagonal"):
            raise ValueError(f"layout {self.name!r}: unknown default_norm {self.default_norm!r}")

    @property
    def flip_permutation(self) -> tuple[int, ...]:
        """``flipped[i] = original[perm[i]]`` relabels the points of a mirrored image."""
        return _mirror_permutation(self.num_points, self.flip_pairs)

    def pupil_points(self, landmarks: torch.Tensor) -> torch.Tensor:
        """The two pupil positions, ``(..., 2, 2)``, from ``(..., N, 2)`` landmarks."""
        if self.pupils is None:
            raise ValueError(f"layout {self.name!r} defines no pupils")
        first, second = self.pupils
        if isinstance(first, int):
            return landmarks[..., [first, second], :]
        return torch.stack([landmarks[..., list(first), :].mean(-2), landmarks[..., list(second), :].mean(-2)], -2)

    def check(self, landmarks: torch.Tensor, source: str = "landmarks") -> None:
        """Raise a ``ValueError`` naming ``source`` if ``landmarks`` do not fit this layout."""
        if landmarks.ndim < 2 or landmarks.shape[-2:] != (self.num_points, 2):
            raise ValueError(
                f"{source}: expected (..., {self.num_points}, 2) for layout {self.name!r}, got {tuple(landmarks.shape)}"
            )
        if not torch.isfinite(landmarks).all():
            raise ValueError(f"{source}: NaN or infinite landmark coordinates")


def custom_layout(num_points: int, name: str | None = None, flip_pairs: Pairs = (), **kwargs) -> Layout:
    """Declare a layout for any number of points (e.g. a 5-point face).

    >>> five = custom_layout(5, flip_pairs=[(0, 1), (3, 4)], outer_eye_corners=(0, 1))
    """
    return Layout(name=name or f"custom-{num_points}", num_points=num_points, flip_pairs=tuple(flip_pairs), **kwargs)


# --------------------------------------------------------------------------- 300W / iBUG 68
_G68 = {
    "jaw": tuple(range(0, 17)),
    "left_brow": tuple(range(17, 22)),
    "right_brow": tuple(range(22, 27)),
    "nose_bridge": tuple(range(27, 31)),
    "nose_base": tuple(range(31, 36)),
    "left_eye": tuple(range(36, 42)),
    "right_eye": tuple(range(42, 48)),
    "outer_mouth": tuple(range(48, 60)),
    "inner_mouth": tuple(range(60, 68)),
}
_FLIP68 = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
)
_EDGES68 = (
    _chain(_G68["jaw"]) + _chain(_G68["left_brow"]) + _chain(_G68["right_brow"])
    + _chain(_G68["nose_bridge"] + (33,)) + _chain(_G68["nose_base"])
    + _chain(_G68["left_eye"], True) + _chain(_G68["right_eye"], True)
    + _chain(_G68["outer_mouth"], True) + _chain(_G68["inner_mouth"], True)
)
W300 = Layout(
    name="300w", num_points=68, groups=_G68, flip_pairs=tuple(_FLIP68), edges=tuple(_EDGES68),
    outer_eye_corners=(36, 45), pupils=(_G68["left_eye"], _G68["right_eye"]),
)

# --------------------------------------------------------------------------- WFLW 98
_G98 = {
    "jaw": tuple(range(0, 33)),
    "left_brow": tuple(range(33, 42)),
    "right_brow": tuple(range(42, 51)),
    "nose_bridge": tuple(range(51, 55)),
    "nose_base": tuple(range(55, 60)),
    "left_eye": tuple(range(60, 68)),
    "right_eye": tuple(range(68, 76)),
    "outer_mouth": tuple(range(76, 88)),
    "inner_mouth": tuple(range(88, 96)),
    "pupils": (96, 97),
}
_FLIP98 = (
    [(i, 32 - i) for i in range(16)]
    + [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    + [(55, 59), (56, 58)]
    + [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95), (96, 97)]
)
_EDGES98 = (
    _chain(_G98["jaw"]) + _chain(_G98["left_brow"], True) + _chain(_G98["right_brow"], True)
    + _chain(_G98["nose_bridge"] + (57,)) + _chain(_G98["nose_base"])
    + _chain(_G98["left_eye"], True) + _chain(_G98["right_eye"], True)
    + _chain(_G98["outer_mouth"], True) + _chain(_G98["inner_mouth"], True)
)
WFLW = Layout(
    name="wflw", num_points=98, groups=_G98, flip_pairs=tuple(_FLIP98), edges=tuple(_EDGES98),
    outer_eye_corners=(60, 72), pupils=(96, 97),
)

# --------------------------------------------------------------------------- COFW 29
# Order of the COFW release (Burgos-Artizzu et al.): brow corners 0-3, brow tops 4/6 and
# bottoms 5/7, eye corners 8-11, eyelids 12-15, pupils 16-17, nose 18-21, mouth 22-27, chin 28.
_G29 = {
    "brows": tuple(range(0, 8)),
    "eyes": tuple(range(8, 16)),
    "pupils": (16, 17),
    "nose": (18, 19, 20, 21),
    "mouth": tuple(range(22, 28)),
    "chin": (28,),
}
_FLIP29 = [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17), (18, 19), (22, 23)]
_EDGES29 = [(0, 4), (4, 2), (2, 5), (5, 0), (1, 6), (6, 3), (3, 7), (7, 1),
            (8, 12), (12, 10), (10, 13), (13, 8), (9, 14), (14, 11), (11, 15), (15, 9),
            (18, 20), (20, 19), (20, 21), (22, 24), (24, 23), (23, 27), (27, 22)]
COFW = Layout(
    name="cofw", num_points=29, groups=_G29, flip_pairs=tuple(_FLIP29), edges=tuple(_EDGES29),
    outer_eye_corners=(8, 9), pupils=(16, 17),
)

# --------------------------------------------------------------------------- AFLW 19 (the common set)
_G19 = {
    "left_brow": (0, 1, 2),
    "right_brow": (3, 4, 5),
    "left_eye": (6, 7, 8),
    "right_eye": (9, 10, 11),
    "nose": (12, 13, 14),
    "mouth": (15, 16, 17),
    "chin": (18,),
}
_FLIP19 = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]
_EDGES19 = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13), (13, 14),
            (15, 16), (16, 17)]
AFLW = Layout(
    name="aflw", num_points=19, groups=_G19, flip_pairs=tuple(_FLIP19), edges=tuple(_EDGES19),
    outer_eye_corners=(6, 11), pupils=(7, 10), default_norm="box-size",
)

LAYOUTS: dict[str, Layout] = {"300w": W300, "wflw": WFLW, "cofw": COFW, "aflw": AFLW}
_ALIASES = {"68": "300w", "ibug": "300w", "300w-68": "300w", "98": "wflw", "29": "cofw", "19": "aflw",
            "aflw-19": "aflw", "wflw-98": "wflw", "cofw-29": "cofw"}


def get_layout(name: str | Layout) -> Layout:
    """Look a layout up by name (``"300w"``, ``"wflw"``, ``"cofw"``, ``"aflw"``) or point count."""
    if isinstance(name, Layout):
        return name
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in LAYOUTS:
        raise KeyError(f"unknown layout {name!r}; known: {sorted(LAYOUTS)}")
    return LAYOUTS[key]


# --------------------------------------------------------------------------- conversions
# Each target point is a tuple of source indices whose mean it is.
_TO_19: dict[str, list[tuple[int, ...]]] = {
    "300w": [(17,), (19,), (21,), (22,), (24,), (26,), (36,), tuple(range(36, 42)), (39,),
             (42,), tuple(range(42, 48)), (45,), (31,), (30,), (35,), (48,), (62, 66), (54,), (8,)],
    "wflw": [(33,), (35,), (37,), (42,), (44,), (46,), (60,), (96,), (64,),
             (68,), (97,), (72,), (55,), (54,), (59,), (76,), (90, 94), (82,), (16,)],
    "cofw": [(0,), (4,), (2,), (3,), (6,), (1,), (8,), (16,), (10,),
             (11,), (17,), (9,), (18,), (20,), (19,), (22,), (25, 26), (23,), (28,)],
}
_98_TO_68: list[tuple[int, ...]] = (
    [(2 * i,) for i in range(17)]
    + [(i,) for i in range(33, 38)] + [(i,) for i in range(42, 47)]
    + [(i,) for i in range(51, 60)]
    + [(60,), (61,), (63,), (64,), (65,), (67,), (68,), (69,), (71,), (72,), (73,), (75,)]
    + [(i,) for i in range(76, 96)]
)
_CONVERSIONS: dict[tuple[str, str], list[tuple[int, ...]]] = {
    **{(src, "aflw"): rows for src, rows in _TO_19.items()},
    ("wflw", "300w"): _98_TO_68,
}


def conversion_matrix(source: str | Layout, target: str | Layout) -> torch.Tensor:
    """The ``(M, N)`` matrix that maps ``source`` landmarks to ``target`` ones.

    Defined: 68 -> 19, 98 -> 19, 29 -> 19 (the AFLW-19 points used for cross-dataset tests) and
    98 -> 68 (not exact: WFLW's contour and eyelids are sampled differently). The identity for
    a layout onto itself.
    """
    src, dst = get_layout(source), get_layout(target)
    if src.name == dst.name:
        return torch.eye(src.num_points)
    rows = _CONVERSIONS.get((src.name, dst.name))
    if rows is None:
        known = ", ".join(f"{a}->{b}" for a, b in _CONVERSIONS)
        raise ValueError(f"no conversion from {src.name!r} to {dst.name!r}; defined: {known}")
    matrix = torch.zeros(len(rows), src.num_points)
    for r, cols in enumerate(rows):
        matrix[r, list(cols)] = 1.0 / len(cols)
    return matrix


def convert(landmarks: torch.Tensor, source: str | Layout, target: str | Layout) -> torch.Tensor:
    """Convert ``(..., N, 2)`` landmarks of ``source`` into ``(..., M, 2)`` landmarks of ``target``."""
    src = get_layout(source)
    src.check(landmarks, f"landmarks to convert from {src.name!r}")
    matrix = conversion_matrix(src, target).to(landmarks)
    return torch.einsum("mn,...nc->...mc", matrix, landmarks)
