"""The command line: flag definitions (`flags`), flags -> one run config (`config`), one-line
checks (`checks`) and the plumbing every command shares (`main`). Defining the flags (and
--help) imports no jax."""
