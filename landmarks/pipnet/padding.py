"""Padding modes for a whole network: the switch of the PIPNet paper's position experiment.

Zero padding tells every neuron near a border where it sits; with circular padding a convolution
cannot tell the border from the middle (:cite:p:`islam2020position` measure how much absolute
position CNNs encode through padding). :func:`set_padding_mode` switches every convolution, the
stem's max-pool and the transposed convolutions of a network to one mode, so the same network can
be trained and probed with and without that signal (see :mod:`landmarks.pipnet.position`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PADDING_MODES", "PaddedMaxPool2d", "WrappedConvTranspose2d", "set_padding_mode"]

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")


class WrappedConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution whose ``padding`` crop wraps around instead of dropping.

    A transposed convolution scatters each input pixel into a ``k x k`` patch of a larger
    "full" map and then crops ``padding`` pixels from each side. Zero padding simply throws the
    cropped border away, so border outputs get fewer contributions than inner ones, a position
    signal. Here the cropped border is added back on the opposite side (output index
    ``(o - padding) mod L``), which is the transpose of a circularly padded convolution: shifting
    the input by one pixel circularly shifts the output by ``stride`` pixels exactly.

    Same parameters and state dict keys as :class:`torch.nn.ConvTranspose2d`; its
    ``padding_mode`` attribute reads ``"circular"``. ``output_size`` is not supported.
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            raise ValueError("WrappedConvTranspose2d does not take output_size")
        full = F.conv_transpose2d(input, self.weight, None, self.stride, 0, 0, self.groups, self.dilation)
        for dim, pad, extra in ((-2, self.padding[0], self.output_padding[0]), (-1, self.padding[1], self.output_padding[1])):
            length = full.shape[dim] - 2 * pad + extra
            if length < 1:
                raise ValueError(f"WrappedConvTranspose2d: output side {length} < 1")
            index = (torch.arange(full.shape[dim], device=full.device) - pad) % length
            shape = list(full.shape)
            shape[dim] = length
            full = full.new_zeros(shape).index_add_(full.ndim + dim, index, full)
        if self.bias is not None:
            full = full + self.bias.view(1, -1, 1, 1)
        return full


class PaddedMaxPool2d(nn.MaxPool2d):
    """Max-pooling on an input padded with ``mode`` (``F.pad``) instead of ``-inf``.

    ``nn.MaxPool2d`` pads with ``-inf``, so a border window sees fewer real values than an inner
    one: on a feature map that is not constant this leaks position just like zero padding. With
    ``mode="circular"`` the windows wrap around. (``"reflect"`` and ``"replicate"`` give the same
    result as ``-inf`` padding for the usual 3x3/stride-2/padding-1 pool, since the padded values
    are copies of values already in the window.)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 mode: str = "circular") -> None:
        super().__init__(kernel_size, stride, padding, dilation, return_indices=False, ceil_mode=ceil_mode)
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        ph, pw = (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
        padded = F.pad(input, (pw, pw, ph, ph), mode=self.mode)
        return F.max_pool2d(padded, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"


def _plain_max_pool(pool: nn.MaxPool2d) -> nn.MaxPool2d:
    return nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode)


def _padded_max_pool(pool: nn.MaxPool2d, mode: str) -> PaddedMaxPool2d:
    return PaddedMaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, mode)


def _transposed(conv: nn.ConvTranspose2d, cls: type) -> nn.ConvTranspose2d:
    """A copy of ``conv`` as class ``cls`` sharing its parameters (same state dict keys)."""
    new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
              conv.output_padding, conv.groups, conv.bias is not None, conv.dilation,
              device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new


def _swap(module: nn.Module, mode: str) -> nn.Module | None:
    """The replacement of a layer that cannot change its padding in place, or None to keep it."""
    if isinstance(module, nn.ConvTranspose2d):
        wrapped = isinstance(module, WrappedConvTranspose2d)
        if mode == "circular" and not wrapped:
            return _transposed(module, WrappedConvTranspose2d)
        if mode != "circular" and wrapped:
            return _transposed(module, nn.ConvTranspose2d)
        return None
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        padding = module.padding if isinstance(module.padding, tuple) else (module.padding,)
        if not any(padding):
            return None
        if mode == "zeros":
            return _plain_max_pool(module) if isinstance(module, PaddedMaxPool2d) else None
        return _padded_max_pool(module, mode)
    return None


def set_padding_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch the padding of every layer of ``model`` to ``mode`` (in place) and return it.

    * ``nn.Conv2d``: ``padding_mode`` is set to ``mode`` (PyTorch pads with ``F.pad`` for the
      modes other than ``"zeros"``; weights are untouched).
    * ``nn.ConvTranspose2d`` (the heatmap head's and the stride-16 PIP head's upsampling):
      PyTorch only supports zero padding there. For ``"circular"`` each one is replaced by a
      :class:`WrappedConvTranspose2d` sharing its weights, which wraps the cropped border around;
      for ``"reflect"`` / ``"replicate"`` there is no natural meaning, so they keep the
      zero-padding behaviour; ``"zeros"`` restores plain ones.
    * ``nn.MaxPool2d`` with padding (the ResNet stem's 3x3 pool pads with ``-inf``, which leaks
      position too): replaced by a :class:`PaddedMaxPool2d` that pads with ``mode``;
      ``"zeros"`` restores the plain ``-inf``-padded pool (after a ReLU the two agree).

    Other padding (average pools, ``F.pad`` inside ``forward``) is not touched. Replaced layers
    keep their parameters and names, so state dicts load either way. A circularly padded network
    commutes with circular shifts of the input by multiples of its total stride (the input side
    must be a multiple of it); see the module docstring for what that means for each head.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; choose one of {PADDING_MODES}")
    root = _swap(model, mode)
    if root is not None:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _swap(child, mode)
            if replacement is not None:
                setattr(parent, name, replacement)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.padding_mode = mode
    return model
