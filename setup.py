"""Build hook (project metadata: pyproject.toml): the package layout and the optional C accelerator.

One installed namespace, ``medseg``. The library lives in ``medseg/``; the Prefect layer and the
command line keep their own top-level folders in the repository and install beneath it:

    medseg/   -> medseg           (the pure library; never imports Prefect)
    tasks/    -> medseg.tasks     (Prefect tasks)
    flows/    -> medseg.flows     (Prefect flows)
    cli/      -> medseg.cli       (the typer app; console script ``medseg``)
    configs/  -> medseg/configs   (the YAML configs, package data)

An editable install (``pip install -e``, ``deploy/install.sh``) maps the same names onto the folders.

``optional=True``: without a C compiler the install still succeeds and medseg uses the pure-Python
walk (same results, ~3x slower header reading); ``ingest`` then logs a warning saying so.
"""

from setuptools import Extension, find_packages, setup

#: installed name -> repository folder, for the folders outside ``medseg/``
MAPPED_PACKAGES = {"medseg.cli": "cli", "medseg.flows": "flows", "medseg.tasks": "tasks", "medseg.configs": "configs"}

setup(
    packages=[*find_packages(include=["medseg", "medseg.*"]), *MAPPED_PACKAGES],
    package_dir=MAPPED_PACKAGES,
    package_data={"medseg": ["py.typed"], "medseg.configs": ["*.yaml"]},
    ext_modules=[Extension("medseg.io.dicom._walk", ["medseg/io/dicom/_walk.c"], optional=True)],
)
