"""Training: the one training loop and the files it writes.

- :mod:`~landmarks.training.loop`: ``fit`` (seeded, resumable, NaN guard, DDP, AMP) and ``train_spec``;
- :mod:`~landmarks.training.checkpoints`: atomic checkpoint files, read without running code.
"""
