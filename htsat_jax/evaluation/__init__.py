"""Evaluation: the metrics (``metrics``: mAP, d', accuracy, event F1; ``psds``), the run's
:class:`~htsat_jax.evaluation.evaluator.Evaluator`, and event-map figures (``plots``)."""
