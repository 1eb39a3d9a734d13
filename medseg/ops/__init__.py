"""Unattended operation: bulk archive indexing, nightly change detection, failure classification.

Pure library code (no Prefect): ``tasks/`` and ``flows/`` wrap it for scheduling and monitoring.
"""
