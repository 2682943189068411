"""Scale-out: the corpus jobs on one machine or a Ray cluster.

* :mod:`speechunits.scale.options` - :class:`ScaleOptions`, the typed backend choice.
* :mod:`speechunits.scale.jobs` - ``extract_features``, ``feature_items``, ``encode_corpus``,
  ``fit_source``, ``fit_sample``: the entry points the ``features`` / ``encode`` / ``fit``
  commands call; every long job keeps its finished work at least every ``shard_seconds``
  and resumes from it (:mod:`speechunits.timed_parts`).
* :mod:`speechunits.scale.prefetch` - decode + resample ahead of the encoder (threads or
  processes, bounded queue, corpus order). Never imports Ray.
* :mod:`speechunits.scale.ray_encode` (features, units) and :mod:`~speechunits.scale.ray_fit`
  (frame sample, k-means) - the same jobs on a Ray cluster (the optional ``[ray]`` extra),
  imported only when ``backend="ray"`` is asked for; :mod:`~speechunits.scale.ray_pipeline`
  (the Ray Data pipeline they share: options, resources, results in corpus order),
  :mod:`~speechunits.scale.ray_workers`
  (decode tasks, encoder actors, the bounded-retry guard), :mod:`~speechunits.scale.ray_session`
  (joining/starting Ray, quiet logs), :mod:`~speechunits.scale.ray_leftovers` (processes of an
  embedded Ray whose driver was killed).

The command-line options (``--backend`` ...) live in :mod:`speechunits.cli.scale_options`.
"""
