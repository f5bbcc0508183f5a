"""Built-in corpora that need no download.

- ``builtin:python-docs``: real English text shipped with every CPython
  (:mod:`pydoc_data.topics` and standard-library docstrings).
- ``builtin:graded``: synthetic records with a known ground-truth ``level``.

A spec is ``builtin:NAME`` with optional query parameters, for example
``builtin:graded?n=100000&seed=3&task=arithmetic`` or ``builtin:python-docs?limit=500``.
This module never imports apache_beam.
"""

from pipelines.corpora.graded import graded_records
from pipelines.corpora.python_docs import python_docs_records
from pipelines.corpora.spec import BUILTIN_PREFIX, is_builtin, load_builtin, parse_builtin

__all__ = [
    "BUILTIN_PREFIX",
    "graded_records",
    "is_builtin",
    "load_builtin",
    "parse_builtin",
    "python_docs_records",
]
