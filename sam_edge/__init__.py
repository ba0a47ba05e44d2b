"""sam-edge: SAM and edge-of-stability experiments in JAX.

The packages are layers; each imports only those below it (tests/test_layers.py checks):

  sweep, compare      `python -m sam_edge.sweep|compare`, the study entry points
  studies/            sweeps of runs and comparisons of their pickles
  cli/                the command line: flags, settings, checks, the main() skeleton
  tasks/              the experiments (images, text): their flags, checks and problems
  run/                one run end to end: loop, measurements on a schedule, outputs, checkpoints
  curvature/          Hessian-vector products, eigensolvers, the measurement and its kinds
  optim/  plots/      optimizers, SAM variants and their edges; the figure engine and figures
  data/  models/      datasets and batches; networks, losses, the linearized model
  errors trees records options    shared below everything
"""
