"""Synthetic faces with exact 68-point iBUG landmarks: the book's default, offline data.

* :class:`SyntheticFaces` - a torch ``Dataset`` of faces rendered on the fly, deterministic
  from ``(seed, index)``, in one of the named :data:`DOMAINS` (``studio``, ``wild``,
  ``lowlight``, ``sketch``) or a :class:`Domain` you declare.
* :func:`sample_face_params` / :func:`render_face` - draw the factors of one face and render
  them, so one factor can be varied at a time (``dataclasses.replace(params, yaw=2.0)``).
* :class:`NonFaceImages` - textures, shapes, noise and black images for probing detectors.
* :func:`domain_statistics` - brightness, contrast, colourfulness, edge density, noise of a
  set of images, to show how the domains differ.

The face geometry comes from the 300-W point distribution model in
:mod:`landmarks.data.shape_model`; the drawing conventions (which boundary each landmark sits on)
are described in :mod:`landmarks.data.synthetic.face`.
"""
from landmarks.data.synthetic.datasets import NON_FACE_KINDS, NonFaceImages, SyntheticData, SyntheticFaces
from landmarks.data.synthetic.domains import DOMAINS, Domain, get_domain
from landmarks.data.synthetic.params import FaceParams, Occluder, sample_face_params
from landmarks.data.synthetic.render import RenderedFace, render_face
from landmarks.data.synthetic.stats import domain_statistics

__all__ = [
    "DOMAINS", "Domain", "FaceParams", "NON_FACE_KINDS", "NonFaceImages", "Occluder", "RenderedFace",
    "SyntheticData", "SyntheticFaces", "domain_statistics", "get_domain", "render_face", "sample_face_params",
]
