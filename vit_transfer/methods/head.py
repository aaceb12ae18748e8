"""``method: head``: the backbone is frozen and only the new head trains; export: the plain model."""

from __future__ import annotations

from .base import Method, head_parameter_ids


class HeadOnly(Method):
    name = "head"
    title = "head only (frozen backbone)"

    def select(self, model):
        head = head_parameter_ids(model)
        return lambda name, p: id(p) in head
