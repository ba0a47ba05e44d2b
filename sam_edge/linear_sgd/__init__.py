"""Mini-batch SGD with heavy-ball momentum in the linearised (NTK) regime, after Velikanov,
Kuznedelev and Yarotsky, "A view of mini-batch SGD via generating functions" (ICLR 2023): four
regimes of one problem, the conditions of convergence, and power-law fits.

  settings.py     the command's flags and their one-line checks (no jax)
  tables.py       a CSV file's feature and target columns, checked (no jax)
  inputs.py       real data's subsets and standardisation: MNIST, CIFAR-10, CSV (no jax)
  network.py      the one-hidden-layer NTK network and its kernel, layer by layer
  problem.py      the kernel scaled to λ_max = 1 and eigendecomposed once; synthetic and real
  scan.py         the recorded steps, the one `lax.scan` of a regime, the batches
  sampled.py      the network and the linearised model trained on sampled batches
  recurrences.py  the exact average over batch samplings (C, J, P) and its spectral diagonal
  conditions.py   −1 < β < 1, αλ_max < 2(1+β), U(1) < 1, and the U(1) = 1 boundary
  fits.py         ν, κ, the predicted exponent min(κ/ν, 2 − 1/ν), a loss curve's exponent
  asymptotics.py  the SD regime's predicted law L(t) ≈ a·t^(−κ/ν) + b·t^(−(2−1/ν)), constants too
  runs.py         every regime over the grid, as loss curves
  results.py      results.json and the printed table
  arrays.py       curves.npz and spectrum.npz
  figures.py      curves, spectrum, stability and budget figures
  study.py        one study end to end (`python -m sam_edge.power_law`)
"""
