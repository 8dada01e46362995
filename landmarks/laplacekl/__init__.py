"""LaplaceKL's semi-supervised training (:cite:p:`robinson2019laplace`); its softargmax and
spread are in :mod:`landmarks.codecs.softargmax`, its losses in :mod:`landmarks.losses` and its
networks in :mod:`landmarks.models.recombinator` and :mod:`landmarks.models.patchgan`.

- :mod:`~landmarks.laplacekl.adversarial`: adversarial training with a PatchGAN on unlabelled faces.
"""
