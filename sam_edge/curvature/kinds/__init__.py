"""The curvature kinds beyond λ1, one module each (`curvature.kind.Kind`)."""
