"""Codecs: landmarks to training targets and network outputs back to landmarks, apart from the networks.

- :mod:`~landmarks.codecs.pip`: PIPNet's score and offset maps and neighbour votes;
- :mod:`~landmarks.codecs.heatmaps`: Gaussian heatmaps with arg-max decoding (Map Net);
- :mod:`~landmarks.codecs.softargmax`: LaplaceKL's softargmax, spread and rendered Laplace maps;
- :mod:`~landmarks.codecs.tasks`: one object per head with its loss and its decoder, which a
  :class:`~landmarks.detector.Detector` holds.
"""
