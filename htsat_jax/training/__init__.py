"""Training: the trainer (``train``), meshes and shardings (``sharding``), optimisers and schedules
(``optim``), metric logging (``metric_writer``), weight averaging and ensembles (``averaging``)."""
