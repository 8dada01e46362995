"""A Detector: a network, the decoder of its head, and the input it expects, in one object.

The network maps images to raw outputs (score maps, heatmaps, coordinates); the *task* of its head
(:mod:`landmarks.codecs.tasks`) decodes them into landmarks and, during training, turns labels into
a loss. A :class:`Detector` holds both, with what a caller needs to feed it correctly:

- ``image_size``: the side of the square input crop, in pixels;
- ``layout``: the landmark layout (number of points, eye corners for the NME, flip pairs);
- ``box_scale`` and ``box_shift``: the crop convention. A face box ``(x0, y0, x1, y1)``, meaning
  the tight box around the face's landmarks (what :func:`landmarks.data.face_detection.detect_faces`
  returns), becomes the square crop of side ``box_scale`` x its longer side, centred on the box's
  centre moved by ``box_shift`` x that side (:meth:`Detector.crop_boxes`). :func:`train_spec
  <landmarks.training.loop.train_spec>` measures both on the training crops
  (:func:`crop_convention`), so the crop a box gives at prediction is the crop the network saw in
  training: a face filling 45 % of a synthetic training image is cut the same way from a photo;
- the pixel convention: RGB images in ``[0, 1]`` (``uint8`` images are divided by 255); the
  ImageNet mean / std normalisation is applied by the trunk itself.

::

    detector = build_detector(ModelSpec("pip", net_stride=32), training_shapes)
    fit(detector, train_set, epochs=8, batch_size=32, lr=1e-3)
    points = detector.predict(images)                      # (B, N, 2) in the images' pixels
    points = detector.predict(photos, boxes=face_boxes)    # crop, resize, decode, map back
    detector.save("pip.pt"); detector = Detector.load("pip.pt")

Rebuilding from a file
----------------------
A file holds the weights and :meth:`Detector.config`: the dotted name of the function that builds
the network with its keyword arguments (``"landmarks.models:pipnet"``), optional modifiers applied
after building (``set_padding_mode``), and the task's class and fields. :meth:`Detector.load` builds
the same untrained network, loads the weights and makes the same task. Only functions inside this
package are called, so a file can name nothing else.

Coordinates
-----------
Landmarks are continuous pixel coordinates: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``
(:mod:`landmarks.data.coords`). :meth:`Detector.predict` with boxes cuts the crop with the same
affine map the datasets use (:func:`~landmarks.data.datasets.crop_and_resize`), so a prediction
on a crop maps back to the photo by the exact inverse of that map.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from landmarks.codecs.pip import mean_face, neighbour_indices
from landmarks.data.datasets import crop_box
from landmarks.data.layouts import Layout, get_layout

__all__ = ["Detector", "ModelSpec", "HEADS", "build_detector", "with_neighbours", "training_landmarks",
           "crop_convention", "CONVENTION_SAMPLES", "MIN_FACE_PIXELS"]

HEADS = ("pip", "heatmap", "coordinate")
#: Training crops :func:`train_spec <landmarks.training.loop.train_spec>` measures the crop convention on.
CONVENTION_SAMPLES = 256
#: The smallest face (the longer side of its crop inside the image, in pixels) :meth:`Detector.predict` accepts.
MIN_FACE_PIXELS = 8


# ------------------------------------------------------------------------------ rebuilding by name
def _resolve(name: str) -> Any:
    """The object ``"landmarks.module:attribute"`` names; nothing outside this package."""
    module, _, attribute = name.partition(":")
    if not (module == "landmarks" or module.startswith("landmarks.")) or not attribute:
        raise ValueError(f"{name!r}: a detector file may only name 'landmarks.<module>:<function>'")
    return getattr(importlib.import_module(module), attribute)


def _qualified(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _encode(value: Any) -> Any:
    """Task fields as plain values (tensors become ``{"tensor": nested list, "dtype": name}``)."""
    if isinstance(value, Tensor):
        return {"tensor": value.tolist(), "dtype": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, Layout):
        return value.name
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"tensor", "dtype"}:
        return torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"]))
    return value


def task_config(task: Any) -> dict[str, Any]:
    """``{"task": "landmarks.codecs.tasks:PIPTask", "fields": {...}}`` for a dataclass task."""
    if not dataclasses.is_dataclass(task):
        raise TypeError(f"{type(task).__name__}: a detector's task must be a dataclass to be saved")
    fields = {f.name: _encode(getattr(task, f.name)) for f in dataclasses.fields(task) if f.init}
    return {"task": _qualified(type(task)), "fields": fields}


def task_from_config(config: Mapping[str, Any]) -> Any:
    cls = _resolve(config["task"])
    fields = {key: _decode(value) for key, value in config["fields"].items()}
    for f in dataclasses.fields(cls):
        if f.name in fields and isinstance(fields[f.name], list) and "tuple" in str(f.type):
            fields[f.name] = tuple(fields[f.name])
    return cls(**fields)


def layout_config(layout: Layout | None) -> str | dict[str, Any] | None:
    """A registered layout by name, any other (:func:`~landmarks.data.layouts.custom_layout`) by value."""
    if layout is None:
        return None
    from landmarks.data.layouts import LAYOUTS

    if LAYOUTS.get(layout.name) == layout:
        return layout.name
    return {f.name: _encode(getattr(layout, f.name)) if f.name != "groups" else {k: list(v) for k, v in layout.groups.items()}
            for f in dataclasses.fields(layout)}


def layout_from_config(config: str | Mapping[str, Any] | None) -> Layout | None:
    if config is None or isinstance(config, str):
        return config
    def pairs(values):
        return tuple(tuple(v) for v in values) if values is not None else None
    return Layout(config["name"], config["num_points"], {k: tuple(v) for k, v in config["groups"].items()},
                  pairs(config["flip_pairs"]) or (), pairs(config["edges"]) or (),
                  tuple(config["outer_eye_corners"]) if config["outer_eye_corners"] is not None else None,
                  (tuple(config["pupils"]) if config["pupils"] is None or isinstance(config["pupils"][0], int)
                   else pairs(config["pupils"])) if config["pupils"] is not None else None,
                  config["default_norm"])


# ------------------------------------------------------------------------------ the detector
class Detector:
    """A network with the decoder of its head and the input convention it was trained with.

    Args:
        model: maps ``(B, 3, H, W)`` images in ``[0, 1]`` to a dict of raw outputs.
        task: decodes the outputs (``task.predict``) and defines the training loss (``task.loss``).
        image_size: side of the square input crop (``None``: any size, images are used as given).
        layout: the landmark layout (name or :class:`~landmarks.data.layouts.Layout`; ``None``: the
            data's layout is used wherever one is needed).
        box_scale: crop side over the longer side of a face box given to :meth:`predict`.
        box_shift: ``(dx, dy)``: the crop's centre minus the box's, over the box's longer side.
        architecture: how to rebuild ``model`` for :meth:`load` (``{"builder": "module:function",
            "kwargs": {...}, "modifiers": [[name, kwargs], ...]}``); set by :func:`build_detector`.
        spec: the :class:`ModelSpec` it was built from, if any (kept for display and the CLI).
    """

    def __init__(self, model: nn.Module, task: Any, image_size: int | None = None, layout: Layout | str | None = "300w",
                 box_scale: float = 1.0, architecture: Mapping[str, Any] | None = None,
                 spec: "ModelSpec | None" = None, box_shift: Sequence[float] = (0.0, 0.0)) -> None:
        if image_size is not None and image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not box_scale > 0:
            raise ValueError(f"box_scale must be positive, got {box_scale}")
        self.model, self.task = model, task
        self.image_size = image_size
        self.layout = get_layout(layout) if layout is not None else None
        self.box_scale = float(box_scale)
        self.box_shift = (float(box_shift[0]), float(box_shift[1]))
        if not np.isfinite(self.box_shift).all():
            raise ValueError(f"box_shift must be finite, got {box_shift}")
        self.architecture = dict(architecture) if architecture is not None else None
        self.spec = spec
        #: Run :meth:`predict` in channels-last memory layout: ``None`` = on a CPU only.
        self.channels_last: bool | None = None
        self._memory_format = torch.contiguous_format

    def __repr__(self) -> str:
        return (f"Detector({type(self.model).__name__}, {type(self.task).__name__}, image_size={self.image_size}, "
                f"layout={self.layout.name if self.layout else None!r}, box_scale={self.box_scale:g}, "
                f"box_shift=({self.box_shift[0]:g}, {self.box_shift[1]:g}))")

    # -------------------------------------------------------------------------- device and mode
    @property
    def device(self) -> torch.device:
        tensor = next(iter([*self.model.parameters(), *self.model.buffers()]), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def to(self, device: str | torch.device) -> "Detector":
        """Move the network to ``device`` (in the default memory layout); returns the detector."""
        self.model.to(device, memory_format=torch.contiguous_format)
        self._memory_format = torch.contiguous_format
        return self

    def eval(self) -> "Detector":
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> "Detector":
        self.model.train(mode)
        return self

    # -------------------------------------------------------------------------- inference
    def outputs(self, images: Tensor) -> dict[str, Tensor]:
        """Raw network outputs of ``(B, 3, H, W)`` input crops (no decoding, no gradient bookkeeping
        changed: call it under ``torch.no_grad()`` for inference)."""
        return self.model(images)

    def decode(self, outputs: Mapping[str, Tensor], images: Tensor) -> Tensor:
        """``(B, N, 2)`` landmarks in pixels of ``images`` (the crops the outputs were computed on)."""
        return self.task.predict(outputs, {"image": images})

    def landmarks(self, images: Tensor, flip: bool = False) -> Tensor:
        """``(B, N, 2)`` landmarks of ``(B, 3, H, W)`` input crops, optionally with test-time flip.

        ``flip=True`` also runs the mirrored crops, mirrors their landmarks back (``x -> W - x``,
        then relabelled with the layout's flip permutation) and returns the mean of both
        predictions, as PIPNet's and most benchmarks' test-time augmentation does.
        """
        points = self.decode(self.outputs(images), images)
        if not flip:
            return points
        if self.layout is None or not self.layout.flip_pairs:
            name = self.layout.name if self.layout is not None else None
            raise ValueError(f"test-time flip needs a layout with flip pairs; this detector's layout is {name!r}")
        mirrored = images.flip(-1)
        back = self.decode(self.outputs(mirrored), mirrored)[:, list(self.layout.flip_permutation)]
        back = torch.stack([images.shape[-1] - back[..., 0], back[..., 1]], dim=-1)
        return (points + back) / 2

    @torch.no_grad()
    def predict(self, images: Tensor | np.ndarray | Sequence[Tensor | np.ndarray],
                boxes: Tensor | np.ndarray | Sequence[Sequence[float]] | None = None,
                batch_size: int = 64, flip: bool = False) -> Tensor:
        """Landmarks ``(B, N, 2)`` in the pixel coordinates of the images given.

        ``images``: a ``(B, 3, H, W)`` tensor (float in ``[0, 1]`` or ``uint8``), or a sequence of
        images of any sizes (``(3, H, W)`` tensors or ``(H, W, 3)`` RGB arrays). ``boxes``: one face
        box ``(x0, y0, x1, y1)`` per image, cropped with :attr:`box_scale`; without boxes each
        whole image is the crop (made square around its centre). Crops are resized to
        :attr:`image_size`, decoded in evaluation mode (the mode is restored) and mapped back.
        ``flip``: test-time flip (:meth:`landmarks`). Returns a float32 CPU tensor.

        On a CPU the network runs in channels-last memory layout (:attr:`channels_last`), which
        ``benchmarks/inference_speed.py`` measures faster there for every head; the weights are
        converted once, on the first call, and the numbers are those of the default layout up to
        float rounding.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            if boxes is None and isinstance(images, Tensor) and images.ndim == 4 and self._fits(images):
                return self._predict_crops(_as_float(images), batch_size, flip).cpu()
            return self._predict_boxes(_image_list(images), boxes, batch_size, flip)
        finally:
            self.model.train(was_training)

    def _fits(self, images: Tensor) -> bool:
        height, width = images.shape[-2:]
        return self.image_size is None or (height == width == self.image_size)

    def _uses_channels_last(self, device: torch.device) -> bool:
        wanted = device.type == "cpu" if self.channels_last is None else self.channels_last
        if wanted and self._memory_format is not torch.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self._memory_format = torch.channels_last
        return wanted

    def _predict_crops(self, images: Tensor, batch_size: int, flip: bool = False) -> Tensor:
        device = self.device
        channels_last = self._uses_channels_last(device)
        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size].to(device)
            if channels_last:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            results.append(self.landmarks(chunk, flip).float())
        if not results:
            raise ValueError("no images to predict")
        return torch.cat(results)

    def _predict_boxes(self, images: list[np.ndarray], boxes: Any, batch_size: int, flip: bool = False) -> Tensor:
        from landmarks.data.coords import apply_affine
        from landmarks.data.datasets import crop_and_resize, crop_matrix

        if self.image_size is None:
            raise ValueError("this detector has no image_size: give it crops of the size it was trained on")
        if boxes is not None:
            boxes = np.asarray(boxes.cpu() if isinstance(boxes, Tensor) else boxes, dtype=np.float64).reshape(-1, 4)
            if len(boxes) != len(images):
                raise ValueError(f"{len(boxes)} boxes for {len(images)} images: give one box per image")
            bad = ~(np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
            if bad.any():
                raise ValueError(f"box {boxes[bad][0].tolist()} (image {int(np.flatnonzero(bad)[0])}): "
                                 "need x1 > x0 and y1 > y0")
            crops = self.crop_boxes(boxes)
        else:
            crops = np.stack([crop_box(np.array([0.0, 0.0, image.shape[1], image.shape[0]]), 1.0) for image in images])
        for k, (image, crop) in enumerate(zip(images, crops)):
            _check_crop(image, crop, boxes[k] if boxes is not None else None, k)
        size = self.image_size
        pixels = np.stack([crop_and_resize(image, np.zeros((0, 2)), crop, size)[0] for image, crop in zip(images, crops)])
        tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255.0)
        points = self._predict_crops(tensor, batch_size, flip).double().cpu().numpy()
        mapped = []
        for crop, pts in zip(crops, points):
            inverse = np.linalg.inv(np.vstack([crop_matrix(crop, size), [0.0, 0.0, 1.0]]))[:2]
            mapped.append(apply_affine(inverse, pts))
        return torch.from_numpy(np.stack(mapped)).float()

    def crop_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """The square crops ``(K, 4)`` that the crop convention (:attr:`box_scale`,
        :attr:`box_shift`) cuts around face boxes ``(K, 4)``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        crops = crop_box(boxes, self.box_scale)
        side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        shift = np.asarray(self.box_shift)[None, :] * side[:, None]
        return crops + np.concatenate([shift, shift], axis=1)

    # -------------------------------------------------------------------------- export
    def export_onnx(self, path: str | Path, batch_size: int = 1, flip: bool = False, opset: int = 18) -> Path:
        """Write the network *and its decoder* as one ONNX graph: ``images`` ``(B, 3, S, S)`` float
        in ``[0, 1]`` (``S`` = :attr:`image_size`) to ``landmarks`` ``(B, N, 2)`` in crop pixels,
        the batch size free. Needs the optional ``onnx`` extra (``pip install "landmarks[onnx]"``).
        Cropping and mapping back to a photo stay outside the graph, as in :meth:`predict`.
        """
        try:
            import onnx  # noqa: F401  (torch.onnx needs it)
            import onnxscript  # noqa: F401
        except ImportError as error:
            raise ImportError("export_onnx needs the onnx extra: pip install 'landmarks[onnx]'") from error
        if self.image_size is None:
            raise ValueError("this detector has no image_size, so its input shape is unknown")
        path = Path(path)
        was_training = self.model.training
        self.model.eval()
        graph = _Decoded(self, flip).eval()
        example = torch.rand(max(2, batch_size), 3, self.image_size, self.image_size, device=self.device)
        try:
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["images"],
                                        output_names=["landmarks"], opset_version=opset,
                                        dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
                                        verbose=False)
            program.save(str(path))
        finally:
            self.model.train(was_training)
        return path

    # -------------------------------------------------------------------------- files
    def config(self) -> dict[str, Any]:
        """What :meth:`load` needs besides the weights (plain JSON-like values)."""
        if self.architecture is None:
            raise ValueError("this detector has no architecture record (build it with build_detector or pass "
                             "architecture=...), so it could not be rebuilt from a file")
        return {"architecture": self.architecture, "codec": task_config(self.task), "image_size": self.image_size,
                "layout": layout_config(self.layout), "box_scale": self.box_scale, "box_shift": list(self.box_shift),
                "spec": self.spec.to_config() if self.spec is not None else None}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Detector":
        """The untrained detector a :meth:`config` describes."""
        architecture = config["architecture"]
        model = build_network(architecture)
        spec = ModelSpec.from_config(config["spec"]) if config.get("spec") else None
        return cls(model, task_from_config(config["codec"]), config.get("image_size"), layout_from_config(config.get("layout")),
                   config.get("box_scale", 1.0), architecture, spec, config.get("box_shift", (0.0, 0.0)))

    def save(self, path: str | Path, history: Any = None, half: bool = False, **record: Any) -> Path:
        """Write the weights (in float16 with ``half=True``), :meth:`config`, the training history and
        ``record`` (metrics, settings, command, ...) to ``path``, atomically."""
        from landmarks.training.checkpoints import save_model

        model = self.model
        if half:
            model = _half_copy(model)
        return save_model(path, model, history, {"detector": self.config(), **record})

    @classmethod
    def load(cls, path: str | Path, map_location: Any = "cpu") -> "Detector":
        """The detector saved at ``path`` (float32, evaluation mode)."""
        return cls.load_with_record(path, map_location)[0]

    @classmethod
    def load_with_record(cls, path: str | Path, map_location: Any = "cpu") -> tuple["Detector", dict[str, Any]]:
        """The detector saved at ``path`` and the rest of the file's record (``"history"``,
        ``"metrics"``, ``"command"``, ... as saved)."""
        from landmarks.training.checkpoints import load_checkpoint

        state = load_checkpoint(path, map_location=map_location)
        config = state.get("config") or {}
        if "detector" not in config:
            raise ValueError(f"{path}: not a detector file (no 'detector' record inside; it may be a training "
                             "checkpoint: load it with the run's own code, or save the trained Detector)")
        try:
            detector = cls.from_config(config["detector"])
            detector.model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                            for k, v in state["model"].items()})
        except (KeyError, TypeError, RuntimeError) as error:
            raise ValueError(f"{path}: the stored weights do not fit the stored architecture ({error})") from error
        detector.model.to(map_location).eval()
        detector._check_decodes(path)
        record = {key: value for key, value in config.items() if key != "detector"}
        record["history"] = state.get("history")
        record.setdefault("command", state.get("command"))
        return detector, record

    def _check_decodes(self, path: str | Path) -> None:
        """``ValueError`` naming ``path`` when the stored decoder cannot decode the stored network's
        outputs (a file whose head record and weights disagree), found on one blank crop now rather
        than as a ``KeyError`` deep inside the first prediction."""
        size = self.image_size or 64
        images, outputs = torch.zeros(1, 3, size, size, device=self.device), {}
        try:
            with torch.no_grad():
                outputs = self.outputs(images)
                self.decode(outputs, images)
        except (KeyError, IndexError, RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: the stored decoder {type(self.task).__name__} cannot decode the stored network's "
                             f"outputs {sorted(outputs)} ({type(error).__name__}: "
                             f"{error}); the file's head record and its weights disagree") from error


class _Decoded(nn.Module):
    """A detector's network followed by its decoder: images to landmarks (what ONNX exports)."""

    def __init__(self, detector: Detector, flip: bool) -> None:
        super().__init__()
        self.model, self.detector, self.flip = detector.model, detector, flip

    def forward(self, images: Tensor) -> Tensor:
        return self.detector.landmarks(images, self.flip)


def _as_float(images: Tensor) -> Tensor:
    return images.float().div(255.0) if images.dtype == torch.uint8 else images.float()


def _image_list(images: Any) -> list[np.ndarray]:
    """Images as ``(H, W, 3)`` uint8 RGB arrays (tensors in ``[0, 1]`` are scaled to 0-255)."""
    if isinstance(images, (Tensor, np.ndarray)) and images.ndim == 3:
        images = [images]
    result = []
    for index, image in enumerate(images):
        if isinstance(image, Tensor):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"image {index}: expected a (3, H, W) tensor, got {tuple(image.shape)}")
            array = image.detach().cpu()
            array = array if array.dtype == torch.uint8 else (array.float().clamp(0, 1) * 255).round().to(torch.uint8)
            image = array.permute(1, 2, 0).numpy()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {index}: expected an (H, W, 3) RGB array, got {image.shape}")
        result.append(np.ascontiguousarray(image))
    return result


@torch.no_grad()
def _half_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).half()


@torch.no_grad()
def round_to_half(model: nn.Module) -> nn.Module:
    """Round every floating-point tensor of the state dict to the nearest float16 value (kept float32).

    Stored models are saved in half precision; rounding *before* they are evaluated makes the stored
    metrics exactly those of the weights a reader loads. Only what is saved is rounded: buffers that
    are not part of the state dict (the input normalisation's constants) are rebuilt exactly on load,
    so they stay exact here too.
    """
    for tensor in model.state_dict().values():
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
    return model


def build_network(architecture: Mapping[str, Any]) -> nn.Module:
    """The untrained network an architecture record describes (builder, kwargs, modifiers)."""
    model = _resolve(architecture["builder"])(**architecture.get("kwargs", {}))
    for name, kwargs in architecture.get("modifiers", []):
        model = _resolve(name)(model, **kwargs)
    return model


def architecture(builder: Any, modifiers: Sequence[tuple[Any, Mapping[str, Any]]] = (), **kwargs: Any
                 ) -> dict[str, Any]:
    """An architecture record: ``architecture(pipnet, num_points=68, width=0.25)``."""
    from landmarks.training.checkpoints import normalise_config

    return normalise_config({"builder": _qualified(builder), "kwargs": kwargs,
                             "modifiers": [[_qualified(f), dict(k)] for f, k in modifiers]})


# ------------------------------------------------------------------------------ PIPNet-family specs
@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a ResNet detector with a coordinate, heatmap or PIP head.

    Args:
        head: ``"pip"``, ``"heatmap"`` or ``"coordinate"``.
        num_points: landmarks per face.
        depth, width: ResNet depth and channel multiplier of the trunk.
        image_size: side of the square input in pixels.
        net_stride: stride of the head's output maps (PIP: 16-128, heatmap: 1-4; unused for coordinates).
        num_neighbours: PIPNet's neighbours per landmark (0 = plain PIP regression).
        neighbours: the neighbour indices, filled in from the training shapes by :func:`with_neighbours`.
        coordinate_loss: ``"l1"``, ``"l2"`` or ``"iod-l2"`` for the coordinate head.
        layout: layout name, used by the ``"iod-l2"`` loss and for evaluation.
        pretrained: start the trunk from ImageNet weights (downloads; never in the offline book).
    """

    head: str = "pip"
    num_points: int = 68
    depth: int = 18
    width: float = 0.25
    image_size: int = 128
    net_stride: int = 32
    num_neighbours: int = 10
    neighbours: tuple[tuple[int, ...], ...] | None = None
    coordinate_loss: str = "l1"
    layout: str = "300w"
    pretrained: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")

    @classmethod
    def from_profile(cls, profile: Any, **fields: Any) -> "ModelSpec":
        """A spec with the profile's trunk width and input size."""
        return cls(width=profile.width, image_size=profile.image_size, **fields)

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ModelSpec":
        fields = dict(config)
        if fields.get("neighbours") is not None:
            fields["neighbours"] = tuple(tuple(int(i) for i in row) for row in fields["neighbours"])
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


def training_landmarks(data: Any, limit: int = 2000) -> Tensor:
    """The ``(M, N, 2)`` landmarks of the first ``limit`` training samples (for the mean face).

    A :class:`~landmarks.data.datasets.LandmarkDataset` (or a ``Subset`` of one) gives them without
    reading an image and before its augmentation (:meth:`~landmarks.data.datasets.LandmarkDataset.crop_landmarks`);
    any other dataset is read sample by sample.
    """
    from torch.utils.data import Subset

    source, indices = data, None
    while isinstance(source, Subset):  # nested subsets: compose their indices
        indices = list(source.indices) if indices is None else [source.indices[i] for i in indices]
        source = source.dataset
    if hasattr(source, "crop_landmarks"):
        points = source.crop_landmarks()
        return (points if indices is None else points[indices])[:limit]
    return torch.stack([data[i]["landmarks"] for i in range(min(limit, len(data)))])


def crop_convention(train_landmarks: Tensor, image_size: int) -> tuple[float, tuple[float, float]]:
    """The crop convention ``(box_scale, box_shift)`` of training crops of side ``image_size`` whose
    landmarks (in crop pixels, before augmentation) are ``(M, N, 2)``: the median of the crop side
    over the landmark box's longer side, and the median of the crop centre minus the box centre over
    that side. Crops cut from landmark boxes with ``crop_box(points, 1.1)`` give ``(1.1, (0, 0))``;
    synthetic faces, which fill about 45 % of their image, about ``(2.2, (0, 0.05))``."""
    points = torch.as_tensor(train_landmarks, dtype=torch.float64).reshape(-1, *train_landmarks.shape[-2:])
    if len(points) == 0:
        raise ValueError("crop_convention needs the landmarks of at least one training crop")
    low, high = points.amin(dim=1), points.amax(dim=1)
    side = (high - low).amax(dim=1).clamp(min=1e-6)
    shift = (image_size / 2 - (low + high) / 2) / side[:, None]
    scale = float((image_size / side).median())
    return scale, (float(shift[:, 0].median()), float(shift[:, 1].median()))


def _check_crop(image: np.ndarray, crop: np.ndarray, box: np.ndarray | None, index: int) -> None:
    """``ValueError`` when a face box lies outside its image or the face is too small to find landmarks in."""
    height, width = image.shape[:2]
    what = f"box {' '.join(f'{v:g}' for v in box)}" if box is not None else "the whole image"
    if box is not None and (box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0):
        raise ValueError(f"{what} (image {index}) lies outside the image of {width} x {height} pixels")
    inside = min(crop[2], width) - max(crop[0], 0), min(crop[3], height) - max(crop[1], 0)
    if max(inside) < MIN_FACE_PIXELS or min(height, width) < 2:
        raise ValueError(f"{what} (image {index}, {width} x {height} pixels) gives a face of "
                         f"{max(0.0, max(inside)):.0f} pixels; at least {MIN_FACE_PIXELS} are needed")


def with_neighbours(spec: ModelSpec, train_landmarks: Tensor) -> ModelSpec:
    """Fill in PIPNet's neighbour indices from the mean face of ``(M, N, 2)`` training landmarks."""
    if spec.head != "pip" or spec.num_neighbours == 0:
        return replace(spec, neighbours=None)
    face = mean_face(train_landmarks, image_size=spec.image_size)
    indices = neighbour_indices(face, spec.num_neighbours)
    return replace(spec, neighbours=tuple(tuple(row) for row in indices.tolist()))


def build_detector(spec: ModelSpec, train_landmarks: Tensor | None = None,
                   modifiers: Sequence[tuple[Any, Mapping[str, Any]]] = (), box_scale: float = 1.0,
                   layout: Layout | str | None = None, box_shift: Sequence[float] = (0.0, 0.0)) -> Detector:
    """The untrained detector of ``spec``.

    A PIP spec with neighbours needs them: pass the training landmarks (``(M, N, 2)``) or a spec
    already filled in by :func:`with_neighbours`. ``modifiers``: ``(function, kwargs)`` pairs applied
    to the network after it is built (and again when it is loaded), e.g.
    ``[(set_padding_mode, {"mode": "circular"})]``. ``layout``: the detector's layout when it is not
    the registered one named by ``spec.layout`` (a layout of your own, saved with the detector).
    """
    from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask
    from landmarks.models import coordinate_net, heatmap_net, pipnet

    if train_landmarks is not None and spec.head == "pip":
        spec = with_neighbours(spec, train_landmarks)
    common = dict(num_points=spec.num_points, depth=spec.depth, width=spec.width)
    if spec.head == "pip":
        if spec.num_neighbours and spec.neighbours is None:
            raise ValueError("a PIP spec with neighbours needs them: pass the training landmarks")
        record = architecture(pipnet, modifiers, net_stride=spec.net_stride, num_neighbours=spec.num_neighbours,
                              **common)
        task = PIPTask(spec.net_stride, torch.tensor(spec.neighbours) if spec.neighbours is not None else None)
    elif spec.head == "heatmap":
        record = architecture(heatmap_net, modifiers, net_stride=spec.net_stride, **common)
        task = HeatmapTask(spec.net_stride)
    else:
        record = architecture(coordinate_net, modifiers, **common)
        task = CoordinateTask(spec.coordinate_loss, spec.layout)
    model = build_network({**record, "kwargs": {**record["kwargs"], "pretrained": spec.pretrained}})
    if layout is not None and get_layout(layout).num_points != spec.num_points:
        raise ValueError(f"layout {get_layout(layout).name!r} has {get_layout(layout).num_points} points, "
                         f"the spec {spec.num_points}")
    return Detector(model, task, spec.image_size, layout if layout is not None else spec.layout, box_scale,
                    record, spec, box_shift)
