"""Central flows (Cohen, Damian et al., "Understanding Optimization in Deep Learning with Central
Flows", ICLR 2025): the ODE whose solution follows the time-averaged trajectory of full-batch
gradient descent at the edge of stability, integrated beside a GD run and gradient flow from the
same initialisation.

  complementarity  the k×k covariance Σ from the semidefinite complementarity problem
  substep          one Euler substep of the central flow (and of gradient flow), and a GD step
  trajectory       GD, the central flow and gradient flow side by side, as curves
  summary          running average, the edge-of-stability phase and the agreement figures
  figures          the three panels of central_flow.pdf
  outputs          central_flow.pkl (with its checksum) and central_flow.pdf
"""
