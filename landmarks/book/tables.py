"""The book's comparison tables: every seed of stored experiments as mean +- std, beside the mean face.

The chapters compare configurations by the rule of :mod:`landmarks.evaluation.replicates`: a
difference of means is an effect when it exceeds twice the pooled standard deviation over seeds.
:func:`replicate_rows` builds the rows of such a table from the store (one row per experiment, the
mean-face baseline first), and says for each row whether it differs from a reference row beyond
that threshold::

    rows = replicate_rows({"coordinates": "coordinate", "PIP, stride 32": "pip_s32"}, "nme",
                          reference="PIP, stride 32", baseline=0.0945)
    display(markdown_table(rows))
"""
from __future__ import annotations

from typing import Any, Mapping

from landmarks.book.experiments import STORE
from landmarks.evaluation.replicates import Replicates, compare
from landmarks.profile import Profile

__all__ = ["replicates", "replicate_rows", "MEAN_FACE"]

MEAN_FACE = "mean face (ignores the image)"


def replicates(name: str, key: str = "nme", profile: Profile | None = None) -> Replicates:
    """Every stored seed's ``key`` of experiment ``name`` (trained first if missing)."""
    return Replicates(STORE.results(name, profile, progress=False).values(key))


def replicate_rows(entries: Mapping[str, str], key: str = "nme", *, reference: str | None = None,
                   baseline: float | None = None, profile: Profile | None = None, column: str | None = None,
                   extra: Mapping[str, Mapping[str, Any]] | None = None, scale: float = 100.0,
                   digits: int = 2) -> list[dict[str, Any]]:
    """Rows ``{"model", <column>, "seeds", "against <reference>", *extra}`` for ``entries``
    (row label -> experiment name), with the mean-face ``baseline`` (a fraction) as the first row.

    ``column`` names the score column (default ``"<key> (%)"``); ``extra`` maps further column names
    to ``{row label: value}`` (the paper's numbers, say; a missing label gives an empty cell). The
    comparison column reads "lower (3.1 s_p)", "higher (...)" or "within noise (...)", where ``s_p``
    is the pooled standard deviation of the row and the reference row.
    """
    column = column or f"{key.upper() if key in ('nme', 'fr', 'auc') else key} (%)"
    values = {label: replicates(name, key, profile) for label, name in entries.items()}
    if reference is not None and reference not in values:
        raise ValueError(f"reference {reference!r} is not one of the rows {list(values)}")
    against = f"against {reference}" if reference is not None else None
    rows: list[dict[str, Any]] = []

    def row(label: str, score: str, seeds: Any, verdict: Any) -> dict[str, Any]:
        result: dict[str, Any] = {"model": label, column: score, "seeds": seeds}
        if against is not None:
            result[against] = verdict
        for name, by_label in (extra or {}).items():
            result[name] = by_label.get(label)
        return result

    if baseline is not None:
        rows.append(row(MEAN_FACE, f"{scale * baseline:.{digits}f}", None, None))
    for label, value in values.items():
        verdict = None
        if reference is not None and label != reference:
            verdict = compare(value, values[reference]).verdict()
        rows.append(row(label, value.format(scale, digits), value.n, verdict))
    return rows
