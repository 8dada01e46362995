"""The recipes of the chapters' stored models, one module per chapter (see :mod:`landmarks.recipes`)."""
