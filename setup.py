"""Build hook for the optional C accelerator of the DICOM header walk (project metadata: pyproject.toml).

``optional=True``: without a C compiler the install still succeeds and medseg uses the pure-Python
walk (same results, ~3x slower header reading); ``ingest`` then logs a warning saying so.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("medseg.ingest._walk", ["medseg/ingest/_walk.c"], optional=True)])
