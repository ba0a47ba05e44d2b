"""The command line: flag definitions (`flags`), flags -> settings (`settings`), one-line checks
(`checks`) and the plumbing every command shares (`main`). Defining and checking flags imports
no jax."""
