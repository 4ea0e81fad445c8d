"""Work shared by the runs of one task, held in an explicit object instead of a module-level cache.

The runner gives each task of a sweep (the runs an experiment's ``shared_work`` puts together, e.g. every
method of one seed of ``equivalence``) one :class:`Memo`; a run asks it for what it shares with its siblings
(the data split, the reference kernel) and computes it only when absent. The memo lives as long as the task:
nothing survives between sweeps or leaks from one configuration into another.
"""
from __future__ import annotations

import json
from collections import OrderedDict


class Memo:
    """At most ``maxsize`` values, keyed by the JSON text (sorted keys) of a key: a dict of what determines the value,
    the least recently used dropped first."""

    def __init__(self, maxsize: int = 4):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be an integer >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._values = OrderedDict()
        self.computed = 0   # how many values were computed (not found): what tests and curious users check

    def get(self, key, compute):
        """The value stored under ``key``, or ``compute()`` stored there."""
        text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=repr)
        if text in self._values:
            self._values.move_to_end(text)
            return self._values[text]
        value = compute()
        self.computed += 1
        self._values[text] = value
        while len(self._values) > self.maxsize:
            self._values.popitem(last=False)
        return value

    def __len__(self):
        return len(self._values)
