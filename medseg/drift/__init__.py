"""Drift report: are newly ingested cases like the ones the plan's model was trained on?

:mod:`.rules` (reference ranges and the flags), :mod:`.report` (``drift.json`` / ``drift.md``),
:mod:`.plot` (``drift.png``), :mod:`.check` (cases in, report files out), :mod:`.section` (its part of the
metrics report). The per-case appearance it compares is :mod:`medseg.preprocess.appearance`.
"""
