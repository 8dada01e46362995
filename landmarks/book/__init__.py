"""The book's experiments: one module per chapter, all registered in :data:`STORE`.

Nothing else in the library imports this package (``tests/test_project.py`` checks it): the
library is what a researcher trains with; these modules are the book's experiment designs, built
on it. See :mod:`landmarks.book.experiments` for the store.
"""
from landmarks.book.experiments import STORE, book_data, experiment, scores, store_root

# importing a chapter module registers its experiments
from landmarks.book import ch02_heads, ch04_position, ch05_distillation, ch06_heatmap_spread, ch07_adversarial, ch09_cropnet  # noqa: E402,F401,E501

__all__ = ["STORE", "book_data", "experiment", "scores", "store_root"]
