"""Fine-grained landmark detection (:cite:p:`yan2020finegrained`); the networks are in
:mod:`landmarks.models.cropnet`.

- :mod:`~landmarks.finegrained.crops`: differentiable bilinear crops of feature maps (eq. 5);
- :mod:`~landmarks.finegrained.align_loss`: the Align Loss and its surfaces;
- :mod:`~landmarks.finegrained.stages`: the multi-loss task, the fine-grained detector and its
  stage-by-stage evaluation.
"""
