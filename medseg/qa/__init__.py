"""Prediction QA: per case, a score that says "look at this" (no ground truth needed), and the ``qa.json`` record."""
