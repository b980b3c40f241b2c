"""Tasks: what the models are run on (init-time measurements, the toy reversal, translation)."""
