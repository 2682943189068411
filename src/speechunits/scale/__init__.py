"""Scale-out: the overlapped local loader and the Ray Data backend.

* :mod:`speechunits.scale.prefetch` - decode + resample ahead of the encoder (threads or
  processes, bounded queue, corpus order). Never imports Ray.
* :mod:`speechunits.scale.ray_backend` - ``features`` / ``encode`` / ``fit`` on a Ray cluster
  (the optional ``[ray]`` extra), imported only when ``--backend ray`` is asked for.
* :mod:`speechunits.scale.options` - the ``--backend`` family of CLI options.
"""
