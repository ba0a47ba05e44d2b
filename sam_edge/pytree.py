"""`PyTree`: the type of a JAX pytree (nested dicts, lists, tuples of arrays) in annotations.

JAX has no public alias for it, and `Any` is what it amounts to; one name keeps the annotations
readable. This module imports nothing, so any module may use it (flag definitions included).
"""

from typing import Any

PyTree = Any
