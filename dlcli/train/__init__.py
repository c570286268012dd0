"""Training: the fit and evaluate loops, and the callback hooks that report and checkpoint."""
