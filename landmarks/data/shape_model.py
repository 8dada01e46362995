"""A 2-D point distribution model (PDM) of 68-point iBUG / 300-W face shapes.

A shape is a ``(68, 2)`` array of points in a *normalised face frame*: the mean shape is
centred on its centroid, its outer eye corners (points 36 and 45) lie on a horizontal line at
unit distance, x grows to the image right and y grows down. The model writes every shape as

    shape = mean + sum_k b_k * std_k * modes_k,        b_k ~ N(0, 1),

where ``modes`` are orthonormal directions (each ``(68, 2)`` mode is a unit vector of R^136)
found by principal component analysis of Procrustes-aligned real shapes, and ``std_k`` is the
standard deviation of the real shapes along mode ``k``. Values with ``|b_k| <= 3`` stay
plausible. What the first modes do (read from the data, not imposed):

* mode 0 ~ **yaw** (the head turns left / right: the face outline and the nose move sideways;
  ``b_0 > 0`` moves the nose towards the image right),
* mode 1 ~ **pitch** (the head nods: the vertical spacing of brows, eyes, nose and mouth
  changes; ``b_1 > 0`` raises the nose tip towards the eyes and lowers the ears, as when
  looking up),
* mode 2 ~ face width / mouth width,
* mode 3 ~ mouth opening.

The alignment removed in-plane rotation, scale and translation; :func:`place_in_image` puts
them back. The model ships with the package (``landmarks/assets/shape_model_300w68.json``,
statistics of the 870 HELEN training shapes of 300-W; see the README next to it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from landmarks.data.coords import apply_affine

#: File name of the packaged 300-W shape model.
DEFAULT_MODEL = "shape_model_300w68.json"

#: Index of the mode that mostly changes yaw (left / right head turn).
YAW_MODE = 0
#: Index of the mode that mostly changes pitch (nodding up / down).
PITCH_MODE = 1


@dataclass(frozen=True, eq=False)
class ShapeModel:
    """Point distribution model: ``mean`` (N, 2), ``modes`` (K, N, 2), ``std`` (K,).

    ``modes`` are orthonormal when flattened to ``(K, 2N)``; ``std[k]`` is the spread of real
    shapes along mode ``k`` (the modes are sorted by decreasing ``std``).
    """

    mean: np.ndarray
    modes: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        n = self.mean.shape[0]
        if self.mean.shape != (n, 2) or self.modes.shape[1:] != (n, 2) or self.std.shape != self.modes.shape[:1]:
            raise ValueError(
                f"inconsistent shape model: mean {self.mean.shape}, modes {self.modes.shape}, std {self.std.shape}"
            )

    @property
    def num_points(self) -> int:
        """Number of landmarks of a shape (68 for the packaged model)."""
        return self.mean.shape[0]

    @property
    def num_modes(self) -> int:
        """Number of modes K."""
        return self.modes.shape[0]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ShapeModel":
        """Read a model from a JSON file with keys ``mean``, ``modes``, ``std``.

        Without ``path``, the 300-W model packaged with the library.
        """
        if path is None:
            source = resources.files("landmarks").joinpath("assets").joinpath(DEFAULT_MODEL)
        else:
            source = Path(path)
        try:
            data = json.loads(source.read_text())
            arrays = {key: np.asarray(data[key], dtype=np.float64) for key in ("mean", "modes", "std")}
            return cls(**arrays)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: not a shape model (needs 'mean', 'modes', 'std'): {error}") from error

    def _coefficients(self, b: np.ndarray) -> np.ndarray:
        """Pad ``(..., k)`` coefficients with zeros to ``(..., K)``; more than K is an error."""
        b = np.asarray(b, dtype=np.float64)
        if b.ndim == 0 or b.shape[-1] > self.num_modes:
            raise ValueError(f"expected (..., k) coefficients with k <= {self.num_modes}, got shape {b.shape}")
        if b.shape[-1] == self.num_modes:
            return b
        pad = [(0, 0)] * (b.ndim - 1) + [(0, self.num_modes - b.shape[-1])]
        return np.pad(b, pad)

    @cached_property
    def _scaled_modes(self) -> np.ndarray:
        """``(K, 2N)``: each mode times its standard deviation, flattened."""
        return (self.modes * self.std[:, None, None]).reshape(self.num_modes, -1)

    def sample(self, b: np.ndarray | list[float]) -> np.ndarray:
        """The shape(s) ``mean + sum_k b_k std_k modes_k`` for coefficients ``b`` of shape ``(..., k)``.

        ``k`` may be smaller than :attr:`num_modes`: the missing coefficients are zero. Returns
        ``(..., N, 2)`` float64 in the normalised face frame.
        """
        b = self._coefficients(b)
        offsets = (b @ self._scaled_modes).reshape(b.shape[:-1] + self.mean.shape)
        return self.mean + offsets

    def sample_random(self, rng: np.random.Generator, n: int = 1, clip: float = 3.0) -> np.ndarray:
        """``n`` random shapes ``(n, N, 2)`` with ``b ~ N(0, 1)`` clipped to ``[-clip, clip]``."""
        b = np.clip(rng.standard_normal((n, self.num_modes)), -clip, clip)
        return self.sample(b)

    def project(self, shape: np.ndarray) -> np.ndarray:
        """The coefficients ``b`` (K,) whose :meth:`sample` is closest to an aligned ``shape``."""
        residual = (np.asarray(shape, dtype=np.float64) - self.mean).reshape(-1)
        return self.modes.reshape(self.num_modes, -1) @ residual / self.std


def similarity_matrix(scale: float, roll_deg: float, centre: tuple[float, float]) -> np.ndarray:
    """The 2 x 3 matrix ``x -> scale * R(roll) x + centre``.

    With y pointing down, a positive ``roll_deg`` turns the face *clockwise* on screen (the
    image-right eye goes down).
    """
    angle = np.deg2rad(roll_deg)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, centre[0]], [s, c, centre[1]]])


def place_in_image(
    shape: np.ndarray, scale: float, roll_deg: float = 0.0, centre: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Put a normalised shape into an image: ``scale * R(roll) shape + centre``.

    ``scale`` is in pixels per normalised unit (for the mean shape: the inter-ocular distance in
    pixels); ``centre`` is where the origin of the face frame (the mean shape's centroid) goes,
    in the library's continuous pixel coordinates (see :mod:`landmarks.data.coords`).
    """
    return apply_affine(similarity_matrix(scale, roll_deg, centre), np.asarray(shape, dtype=np.float64))


@lru_cache(maxsize=1)
def default_shape_model() -> ShapeModel:
    """The packaged 300-W shape model, loaded once per process."""
    return ShapeModel.load()
