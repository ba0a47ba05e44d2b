"""Curvature of the training loss beyond the top Hessian eigenvalue.

One idea per module; every measurement is a pure, jittable function of (loss, params, batch, key):
  * `operators`: the raveled HVP operator v ↦ Hv, random probes, many HVPs one after another;
  * `trace`:     tr(H) with its standard error (Hutchinson, Hutch++);
  * `slq`:       stochastic Lanczos quadrature: per-probe nodes and weights of the spectral measure;
  * `spectrum`:  numpy post-processing of SLQ (smoothed density on a grid, Wasserstein-1);
  * `blocks`:    per-layer sharpness: top eigenvalue (and trace) of each diagonal block H_bb;
  * `extremes`:  the most negative eigenvalue λ_min with its residual;
  * `registry`:  the measurement kinds, their static settings and record keys, in one place.

This package file imports nothing, so `spectrum` can be used without jax.
"""
