"""Every figure: what to draw as plain data (`spec`), the one engine that draws and writes it
(`figure`), and the run's own figures (`run`). Curvature kinds and studies hand the engine their
panels."""
