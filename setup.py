"""The compiled parts of privmon (everything else is in pyproject.toml): setuptools
builds them on ``pip install`` (``make install``), with the machine's C compiler and
Python's headers.

- privacy/_rows.c: release records spliced from columns (privacy/rowjson.py);
- privacy/_table.c: a window's contribution table, bounded per event in one pass
  (privacy/bounding.py);
- privacy/_admit.c: the participation cap's decisions for a batch, in one pass
  (privacy/participation.py);
- agents/_columns.c: stage 1's numpy columns from decoded events
  (agents/stage1_columns.py).
"""

from setuptools import Extension, setup

_FLAGS = ["-O2", "-Wall", "-Werror"]
setup(ext_modules=[
    Extension("privmon.privacy._rows", sources=["privacy/_rows.c"], extra_compile_args=_FLAGS),
    Extension("privmon.privacy._table", sources=["privacy/_table.c"],
              depends=["privacy/_buf.h"], extra_compile_args=_FLAGS),
    Extension("privmon.privacy._admit", sources=["privacy/_admit.c"],
              depends=["privacy/_buf.h"], extra_compile_args=_FLAGS),
    Extension("privmon.agents._columns", sources=["agents/_columns.c"],
              extra_compile_args=_FLAGS),
])
