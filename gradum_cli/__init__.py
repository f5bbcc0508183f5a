"""The ``gradum`` console script: a thin dispatcher over the packages' own CLIs.

It lives outside the four packages so that none of them has to import another:
``gradum shards ...`` loads ``shards`` only, ``gradum preview`` loads ``sampler`` and
``shards``, and only ``gradum score`` / ``gradum demo`` load ``pipelines`` (and Beam,
lazily, when they run).
"""
