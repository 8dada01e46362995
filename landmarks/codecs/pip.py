"""Pixel-in-pixel (PIP) regression: PIPNet's targets, neighbours and decoding, batched.

PIPNet (:cite:p:`jin2021pipnet`, Sect. 3.1, eq. 1-4) predicts, on a coarse map
of ``h x w`` cells (eq. 4: ``h = H_image / S_stride``, ``w = W_image / S_stride``), for every
landmark ``i``:

- a score map ``S_i`` that should be one at the cell holding the landmark and zero elsewhere
  (eq. 2, ``S* in {0, 1}``);
- two offset maps ``X_i, Y_i``: where inside that cell the landmark lies, measured from the cell's
  top-left corner in cell units (eq. 3, ``X*, Y* in [0, 1]``);
- with the neighbour regression module of the journal version (:cite:p:`jin2021pipnet`),
  ``2 * nb`` more maps: the offsets of the ``nb``
  landmarks nearest to ``i`` in the mean face, measured from *landmark i's* cell.

Cell convention, applied per axis
---------------------------------
With image coordinates in the library convention (:mod:`landmarks.data.coords`: pixel ``j`` spans
``[j, j + 1]``), a landmark at ``x`` is at ``u = x / net_stride`` in map units, where cell ``j``
spans ``[j, j + 1]``. Its cell is ``c = clamp(floor(u), 0, w - 1)`` and its offset ``o = u - c``:
in ``[0, 1)`` for a landmark inside the map, below 0 or above 1 for one outside it (it is kept in
the border cell) and for neighbours. Decoding is ``x = (c + o) * net_stride``.

For a power-of-two stride the round trip ``x -> (c, o) -> x`` is exact in floating point:
``x / stride`` and ``u * stride`` only change the exponent, and ``u - c`` is exact because
``c <= u < c + 1 <= 2c`` for ``c >= 1`` (Sterbenz's lemma) and trivially for ``c = 0``. It stays
exact for landmarks left of or above the map (``c = 0``); right of or below it, and for the
neighbour offsets, it holds to float rounding.

Channel layout of the neighbour maps: channel ``i * nb + k`` of ``neighbour_x`` / ``neighbour_y``
holds landmark ``neighbours[i, k]``'s offset seen from landmark ``i``'s cell (landmark-major).

Everything here works on whole batches with tensor operations (no loop over images or points) on
whatever device the inputs are on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

__all__ = [
    "map_size", "mean_face", "neighbour_indices", "pip_targets", "PIPDecoding", "decode_pip",
    "decode_pip_detailed", "merge_neighbour_votes",
]

ImageSize = int | Sequence[int]


def _image_hw(image_size: ImageSize) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or an ``(h, w)`` pair."""
    if isinstance(image_size, int):
        hw = (image_size, image_size)
    else:
        hw = tuple(int(v) for v in image_size)
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return hw  # type: ignore[return-value]


def _check_stride(net_stride: float) -> float:
    if not (isinstance(net_stride, (int, float)) and math.isfinite(net_stride) and net_stride > 0):
        raise ValueError(f"net_stride must be a positive number, got {net_stride!r}")
    return net_stride


def map_size(image_size: ImageSize, net_stride: float) -> tuple[int, int]:
    """Map height and width for an image (paper eq. 4), rounded up as strided convolutions do.

    ``ceil(H / stride), ceil(W / stride)``: 8 x 8 for a 256 px image at stride 32.
    """
    h, w = _image_hw(image_size)
    s = _check_stride(net_stride)
    return math.ceil(h / s), math.ceil(w / s)


def _check_landmarks(landmarks: Tensor, source: str = "landmarks") -> Tensor:
    if not isinstance(landmarks, Tensor):
        raise ValueError(f"{source}: expected a tensor, got {type(landmarks).__name__}")
    if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"{source}: expected (B, N, 2), got {tuple(landmarks.shape)}")
    if not landmarks.is_floating_point():
        raise ValueError(f"{source}: expected a floating-point tensor, got {landmarks.dtype}")
    if not torch.isfinite(landmarks).all():
        raise ValueError(f"{source}: NaN or infinite coordinates")
    return landmarks


def _check_neighbours(neighbours: Tensor, num_points: int) -> Tensor:
    neighbours = torch.as_tensor(neighbours)
    if neighbours.ndim != 2 or neighbours.shape[0] != num_points or neighbours.dtype.is_floating_point:
        raise ValueError(f"neighbours: expected an integer ({num_points}, nb) tensor, "
                         f"got {neighbours.dtype} {tuple(neighbours.shape)}")
    # the values are checked in eager mode; an exported graph (ONNX) cannot branch on them
    if not torch.compiler.is_compiling() and neighbours.numel() and (neighbours.min() < 0 or neighbours.max() >= num_points):
        raise ValueError(f"neighbours: indices outside 0..{num_points - 1}")
    return neighbours.long()


# --------------------------------------------------------------------------- mean face, neighbours
def mean_face(landmarks: Tensor, boxes: Tensor | None = None, image_size: ImageSize | None = None) -> Tensor:
    """The mean training shape, ``(N, 2)``, after normalising every shape to its crop.

    Normalisation (give exactly one of the two):

    - ``boxes`` ``(M, 4)`` as ``(x0, y0, x1, y1)``: ``((x - x0) / (x1 - x0), (y - y0) / (y1 - y0))``,
      so the box becomes the unit square;
    - ``image_size`` (int or ``(h, w)``): ``(x / w, y / h)``. This is PIPNet's choice: its shapes
      are taken from the face crops resized to the network input, divided by the input size, so the
      mean face lies in ``[0, 1]^2`` (points outside the crop fall outside it).

    Only the relative positions matter for :func:`neighbour_indices`; a non-square crop makes the
    normalised face anisotropic, which changes which points are nearest, so pass square crops (as
    PIPNet does) when the neighbours should follow image distances.

    Args:
        landmarks: ``(M, N, 2)`` training shapes in pixel coordinates.
    """
    landmarks = _check_landmarks(landmarks, "mean_face landmarks")
    if (boxes is None) == (image_size is None):
        raise ValueError("mean_face: give exactly one of boxes or image_size")
    if boxes is not None:
        boxes = torch.as_tensor(boxes, dtype=landmarks.dtype, device=landmarks.device)
        if boxes.shape != (landmarks.shape[0], 4):
            raise ValueError(f"mean_face: expected boxes ({landmarks.shape[0]}, 4), got {tuple(boxes.shape)}")
        origin, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]
        if not (size > 0).all():
            raise ValueError("mean_face: every box needs x1 > x0 and y1 > y0")
        normalised = (landmarks - origin) / size
    else:
        h, w = _image_hw(image_size)  # type: ignore[arg-type]
        normalised = landmarks / landmarks.new_tensor([w, h])
    return normalised.mean(0)


def neighbour_indices(mean_face: Tensor, num_neighbours: int = 10) -> Tensor:
    """Each landmark's ``num_neighbours`` nearest *other* landmarks in the mean face, ``(N, nb)`` long.

    Rows are sorted by increasing Euclidean distance; equal distances are ordered by landmark index,
    so the result is deterministic. Distances are computed in float64 from explicit differences
    (not ``cdist``'s matrix-product shortcut), so exact ties stay exact ties.
    """
    face = torch.as_tensor(mean_face)
    if face.ndim != 2 or face.shape[-1] != 2 or not torch.isfinite(face).all():
        raise ValueError(f"mean_face: expected finite (N, 2), got {tuple(face.shape)}")
    n = face.shape[0]
    if not 0 <= num_neighbours <= n - 1:
        raise ValueError(f"num_neighbours={num_neighbours}: must be between 0 and N - 1 = {n - 1}")
    face = face.double()
    dist2 = (face[:, None, :] - face[None, :, :]).square().sum(-1)
    dist2.fill_diagonal_(math.inf)  # a landmark is never its own neighbour
    # A stable sort keeps equal distances in index order.
    order = torch.sort(dist2, dim=1, stable=True).indices
    return order[:, :num_neighbours].contiguous()


# --------------------------------------------------------------------------- targets
def pip_targets(landmarks: Tensor, image_size: ImageSize, net_stride: float,
                neighbours: Tensor | None = None) -> dict[str, Tensor]:
    """PIP training targets for a batch (paper eq. 2-3, plus the neighbour maps).

    Args:
        landmarks: ``(B, N, 2)`` pixel coordinates of the network input.
        image_size: input size, int or ``(h_img, w_img)``; the map is :func:`map_size`.
        net_stride: image pixels per map cell.
        neighbours: ``(N, nb)`` from :func:`neighbour_indices`, or ``None`` for no neighbour maps.

    Returns a dict of tensors (``h, w`` the map size; float tensors in the landmarks' dtype):

    - ``"score"`` ``(B, N, h, w)``: one at each landmark's cell, zero elsewhere (also the mask that
      says where the offset targets apply);
    - ``"offset_x"``, ``"offset_y"`` ``(B, N, h, w)``: the offset at the landmark's cell, 0 elsewhere;
    - ``"neighbour_x"``, ``"neighbour_y"`` ``(B, N * nb, h, w)`` (only with ``neighbours``): channel
      ``i * nb + k`` holds ``u[neighbours[i, k]] - cell[i]`` at landmark ``i``'s cell, 0 elsewhere;
    - ``"cell"`` ``(B, N, 2)`` long: the ``(column, row)`` of each landmark's cell;
    - ``"cell_index"`` ``(B, N)`` long: ``row * w + column``, the flat index used by the loss;
    - ``"offset"`` ``(B, N, 2)`` and (with neighbours) ``"neighbour_offset"`` ``(B, N, nb, 2)``: the
      same target values without the maps around them.
    """
    landmarks = _check_landmarks(landmarks)
    stride = _check_stride(net_stride)
    h, w = map_size(image_size, stride)
    b, n, _ = landmarks.shape

    u = landmarks / stride  # map units
    upper = landmarks.new_tensor([w - 1, h - 1])
    cell = torch.minimum(torch.floor(u).clamp(min=0), upper)
    offset = u - cell
    cell_long = cell.long()
    cell_index = cell_long[..., 1] * w + cell_long[..., 0]  # (B, N)

    def maps(values: Tensor, index: Tensor) -> Tensor:
        """Write ``values`` (B, C) at flat positions ``index`` (B, C) of zero (B, C, h, w) maps."""
        out = landmarks.new_zeros(b, values.shape[1], h * w)
        return out.scatter_(2, index[..., None], values[..., None]).view(b, values.shape[1], h, w)

    targets = {
        "score": maps(torch.ones_like(offset[..., 0]), cell_index),
        "offset_x": maps(offset[..., 0], cell_index),
        "offset_y": maps(offset[..., 1], cell_index),
        "cell": cell_long,
        "cell_index": cell_index,
        "offset": offset,
    }
    if neighbours is not None:
        neighbours = _check_neighbours(neighbours, n).to(landmarks.device)
        nb = neighbours.shape[1]
        # (B, N, nb, 2): where each neighbour lies, seen from the landmark's own cell.
        nb_offset = u[:, neighbours] - cell[:, :, None, :]
        nb_index = cell_index[:, :, None].expand(b, n, nb).reshape(b, n * nb)
        flat = nb_offset.reshape(b, n * nb, 2)
        targets["neighbour_x"] = maps(flat[..., 0], nb_index)
        targets["neighbour_y"] = maps(flat[..., 1], nb_index)
        targets["neighbour_offset"] = nb_offset
    return targets


# --------------------------------------------------------------------------- decoding
@dataclass
class PIPDecoding:
    """Everything :func:`decode_pip_detailed` reads off the maps (pixel coordinates).

    Attributes:
        landmarks: ``(B, N, 2)`` the final positions: merged with the neighbours' votes when
            neighbours were given and ``merge=True``, else equal to ``own``.
        own: ``(B, N, 2)`` each landmark from its own score and offset maps only.
        votes: ``(B, N, nb, 2)``: ``votes[b, i, k]`` is where landmark ``i`` puts its neighbour
            ``neighbours[i, k]``; ``None`` without neighbours.
        confidence: ``(B, N)`` the maximum of each score map (raw network output, no sigmoid).
        cell: ``(B, N, 2)`` long ``(column, row)`` of the arg-max cell.
    """

    landmarks: Tensor
    own: Tensor
    votes: Tensor | None
    confidence: Tensor
    cell: Tensor


def merge_neighbour_votes(own: Tensor, votes: Tensor, neighbours: Tensor) -> Tensor:
    """Neighbour regression's fusion: the unweighted mean of a landmark's own prediction and every
    vote cast for it.

    ``final[j] = (own[j] + sum over (i, k) with neighbours[i, k] == j of votes[i, k]) / (1 + count_j)``
    where ``count_j`` is how often ``j`` occurs in ``neighbours``. Summed with ``index_add``.

    Args:
        own: ``(B, N, 2)``; votes: ``(B, N, nb, 2)``; neighbours: ``(N, nb)``.
    """
    b, n, nb, _ = votes.shape
    neighbours = _check_neighbours(neighbours, n).to(own.device)
    if neighbours.shape[1] != nb or own.shape != (b, n, 2):
        raise ValueError(f"merge: own {tuple(own.shape)}, votes {tuple(votes.shape)} and "
                         f"neighbours {tuple(neighbours.shape)} disagree")
    flat = neighbours.reshape(-1)
    sums = own.index_add(1, flat, votes.reshape(b, n * nb, 2))
    counts = 1 + torch.bincount(flat, minlength=n).to(own.dtype)
    return sums / counts[None, :, None]


def _gather_at(maps: Tensor, index: Tensor) -> Tensor:
    """``maps`` (B, C, h, w) read at flat positions ``index`` (B, C) -> (B, C)."""
    return maps.flatten(2).gather(2, index[..., None]).squeeze(-1)


def decode_pip_detailed(outputs: Mapping[str, Tensor], image_size: ImageSize | None, net_stride: float,
                        neighbours: Tensor | None = None, merge: bool = True) -> PIPDecoding:
    """Decode PIP maps: arg-max cell, offsets read there, ``x = (cell + offset) * net_stride``.

    The arg-max is the first maximum in row-major order (``torch.argmax``). With ``neighbours``
    each landmark also casts a vote for each of its neighbours from its own cell, and with
    ``merge=True`` the final position is :func:`merge_neighbour_votes`.

    Args:
        outputs: the PIP head's dict (``"score"``, ``"offset_x"``, ``"offset_y"`` and, for
            neighbours, ``"neighbour_x"``, ``"neighbour_y"``), maps of shape ``(B, C, h, w)``.
        image_size: the input size, only used to check that the maps have :func:`map_size`
            (``None`` skips the check). Positions are not clamped to the image.
        net_stride: image pixels per cell.
        neighbours: ``(N, nb)`` as used for training, or ``None``.
        merge: fuse the neighbours' votes into the final positions.
    """
    stride = _check_stride(net_stride)
    for key in ("score", "offset_x", "offset_y"):
        if key not in outputs:
            raise ValueError(f"decode_pip: outputs lack {key!r}")
    score = outputs["score"]
    if score.ndim != 4:
        raise ValueError(f"decode_pip: score must be (B, N, h, w), got {tuple(score.shape)}")
    b, n, h, w = score.shape
    for key in ("offset_x", "offset_y"):
        if outputs[key].shape != score.shape:
            raise ValueError(f"decode_pip: {key} {tuple(outputs[key].shape)} differs from score {tuple(score.shape)}")
    if image_size is not None and map_size(image_size, stride) != (h, w):
        raise ValueError(f"decode_pip: maps are {h} x {w}, but image {image_size} at stride {stride} "
                         f"gives {map_size(image_size, stride)}")

    flat_score = score.flatten(2)
    index = flat_score.argmax(-1)  # (B, N)
    confidence = flat_score.gather(2, index[..., None]).squeeze(-1)
    cell = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], -1)
    cell_f = cell.to(outputs["offset_x"].dtype)
    offset = torch.stack([_gather_at(outputs["offset_x"], index), _gather_at(outputs["offset_y"], index)], -1)
    own = (cell_f + offset) * stride

    votes = None
    final = own
    if neighbours is not None:
        neighbours = _check_neighbours(neighbours, n).to(score.device)
        nb = neighbours.shape[1]
        for key in ("neighbour_x", "neighbour_y"):
            if key not in outputs or outputs[key].shape != (b, n * nb, h, w):
                got = tuple(outputs[key].shape) if key in outputs else "nothing"
                raise ValueError(f"decode_pip: expected {key} of shape {(b, n * nb, h, w)}, got {got}")
        nb_index = index[:, :, None].expand(b, n, nb).reshape(b, n * nb)
        nb_offset = torch.stack([_gather_at(outputs["neighbour_x"], nb_index),
                                 _gather_at(outputs["neighbour_y"], nb_index)], -1).view(b, n, nb, 2)
        votes = (cell_f[:, :, None, :] + nb_offset) * stride
        if merge:
            final = merge_neighbour_votes(own, votes, neighbours)
    return PIPDecoding(landmarks=final, own=own, votes=votes, confidence=confidence, cell=cell)


def decode_pip(outputs: Mapping[str, Tensor], image_size: ImageSize | None, net_stride: float,
               neighbours: Tensor | None = None, merge: bool = True) -> Tensor:
    """``(B, N, 2)`` landmark positions in pixels; see :func:`decode_pip_detailed` for the rest."""
    return decode_pip_detailed(outputs, image_size, net_stride, neighbours, merge).landmarks
