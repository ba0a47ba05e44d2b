"""Studies: sweeps over any flags of an entry point, and comparisons of finished runs.

Studies sit above the entry points and talk to runs only through their command lines and their
pickles (or the reference's `raw.txt` files); `verify` reads their checkpoints too:

  grid.py      the run arguments with swept axes (`--rho=0,0.1`) -> the runs, their names, shards
  commands.py  an entry point's output flags, a run's command line and folder, flag validation
  runner.py    one run as a subprocess: skip when done, resume, log, forward signals, lock
  sources.py   run folders, pickles, reference raw.txt files and sweep folders -> `Run`s
  summary.py   `Run`s -> table rows (summary.csv), seed groups
  overlay.py   λ1/edge and training-loss curves of many runs, seeds as a band
  trends.py    final metrics against each swept axis
  phase.py     a heat map of a metric over two axes
  report.py    summary.csv and the figures written into one folder (what `compare` does), and
               the flags `sweep` and `compare` share
  study.py     a whole sweep: checks first, this shard's runs one after another, the report
  verify.py    whether pickles, done.json files and checkpoint steps match their checksums
"""
