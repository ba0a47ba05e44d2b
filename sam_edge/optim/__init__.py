"""Optimization: the base optimizers (`optimizers`, one table), the SAM variants (`sam`, one
table), the update step (`update`), step-size schedules, Adam's preconditioner, and the stability
edges (`thresholds` in closed form, `edges` for a configured method)."""
