"""Evaluation: the one inference loop over a dataset, the benchmark metrics and speed.

- :mod:`~landmarks.evaluation.loop`: ``predictions`` (batched inference) and ``evaluate``;
- :mod:`~landmarks.evaluation.metrics`: NME, FR, AUC, CED curves;
- :mod:`~landmarks.evaluation.replicates`: mean +- std over seeds and when a difference is an effect;
- :mod:`~landmarks.evaluation.speed`: images per second including decoding.
"""
