"""Gram matrices beyond one machine: computed in tiles (``tiles``: ``gram``, in memory, into a store, or on a dask
cluster) and kept in resumable, checked on-disk stores (``store``: ``GramStore``)."""
