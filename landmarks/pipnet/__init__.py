"""PIPNet's ideas beyond its head (:cite:p:`jin2021pipnet`); the head itself is in
:mod:`landmarks.models.heads` and :mod:`landmarks.codecs.pip`.

- :mod:`~landmarks.pipnet.position`: position overfitting (black images, non-face probes);
- :mod:`~landmarks.pipnet.padding`: padding modes for a whole network;
- :mod:`~landmarks.pipnet.ensembles`: transform ensembles with exact inverses on landmarks;
- :mod:`~landmarks.pipnet.distillation`: pseudo-labels, the curriculum and self-training.
"""
