"""The one compiled part of privmon, privacy/_rows.c (everything else is in
pyproject.toml): setuptools builds it on ``pip install`` (``make install``), with the
machine's C compiler and Python's headers."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("privmon.privacy._rows", sources=["privacy/_rows.c"],
                             extra_compile_args=["-O2", "-Wall", "-Werror"])])
