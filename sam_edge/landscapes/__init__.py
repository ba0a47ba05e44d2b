"""Loss landscapes around trained parameters (`python -m sam_edge.landscape`).

  * `directions`: the plane's directions — filter-normalised random (Li et al. 2018), the top two
    Hessian eigenvectors, or the plane through three runs;
  * `grid`: the loss at θ + a·d₁ + b·d₂ over a grid of (a, b), batched on the device;
  * `figures`: the 1-D curve or the 2-D contour as plot specs, and the grid as landscape.npz.
"""
