"""The documentation's own tests: the site builds with warnings as errors, and every example runs."""
