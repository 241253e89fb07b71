"""Griffe extension: Sphinx cross-reference roles in docstrings become inline code.

The package's numpydoc docstrings use roles such as ``:meth:`StorageConfig.remote``` and
``:func:`~memories_geo.monitor.usage.tier_usage```, which Sphinx links and Markdown shows
raw. This turns each into inline code (``StorageConfig.remote``, ``tier_usage``: a leading
``~`` keeps the last component, as in Sphinx), for the API pages of the site.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["SphinxRoles"]

_ROLE = re.compile(r":(?:py:)?(?:meth|func|class|data|attr|mod|obj|exc|const):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """Replace every Sphinx role in ``text`` with inline code."""

    def sub(match: re.Match[str]) -> str:
        target = match.group(2).strip()
        return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"

    return _ROLE.sub(sub, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the docstring of every object as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Replace the roles of ``obj``'s docstring."""
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
