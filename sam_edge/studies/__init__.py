"""Studies: sweeps over any flags of an entry point, comparisons and evaluations of finished runs.

Studies sit above the entry points and talk to runs only through their command lines and their
files: pickles (or the reference's `raw.txt` files), parameters files and, for `verify`,
checkpoints. A whole sweep is `study.py` (with `grid`, `commands`, `runner`); what `compare` and
a sweep's end write is `report.py` (with `summary`, `cells`, `selection`, `overlay`, `trends`,
`phase`); each module's docstring says what it does, and docs/layout.md maps them.
"""
