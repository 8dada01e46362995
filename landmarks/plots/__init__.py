"""Plots: faces, landmarks, heatmaps, curves and tables for the chapters.

- :mod:`~landmarks.plots.figures`: faces with landmarks, heatmap overlays, CED curves, tables;
- :mod:`~landmarks.plots.laplace`: LaplaceKL's maps and discriminator scores;
- :mod:`~landmarks.plots.align`: Align Loss surfaces and feature patches.
"""
