"""HTML builders for the notebook reprs: a header, rows, collapsible sections, tables.

Every builder escapes the text it is given; only :class:`Html` values (built here) pass
through unescaped. The output is well-formed XML (quoted attributes, closed tags), so it
renders the same in JupyterLab, VS Code, the classic notebook and static HTML exports.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from memories_geo.display.css import STYLE

__all__ = ["Html", "attrs_list", "dims_list", "esc", "repr_html", "row", "section", "span", "table"]


class Html(str):
    """Markup that builders insert as is (everything else is escaped)."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as escaped text, or unchanged when it is already :class:`Html`.

    Examples
    --------
    >>> esc("<script>")
    '&lt;script&gt;'
    """
    if isinstance(value, Html):
        return value
    return Html(html.escape(str(value), quote=True))


def _attr(name: str, value: object | None) -> str:
    return "" if value is None else f" {name}='{html.escape(str(value), quote=True)}'"


def span(value: object, *, cls: str | None = None, title: object | None = None) -> Html:
    """A ``<span>`` with an optional class and tooltip.

    Examples
    --------
    >>> span("abc", cls="mg-mono", title="full")
    "<span class='mg-mono' title='full'>abc</span>"
    """
    return Html(f"<span{_attr('class', cls)}{_attr('title', title)}>{esc(value)}</span>")


def row(label: object, value: object, *, title: object | None = None) -> Html:
    """One always-visible line of a repr: a label and its value.

    Examples
    --------
    >>> row("tier", "hot")
    "<li><div class='mg-label'>tier</div><div class='mg-inline'>hot</div></li>"
    """
    return Html(
        f"<li><div class='mg-label'>{esc(label)}</div>"
        f"<div class='mg-inline'{_attr('title', title)}>{esc(value)}</div></li>"
    )


def section(
    label: object,
    details: object,
    *,
    preview: object = "",
    count: int | None = None,
    expanded: bool = True,
) -> Html:
    """A collapsible section: a toggle label, an inline preview and the details below.

    A section with ``count == 0`` cannot be opened.

    Parameters
    ----------
    label : str
        Section name.
    details : str or Html
        What opening the section shows.
    preview : str or Html
        One line shown while the section is closed.
    count : int, optional
        Number of items, shown after the label.
    expanded : bool
        Open at first.

    Examples
    --------
    >>> "mg-section-in" in section("Attributes", "none", count=0)
    True
    """
    ident = f"mg-{uuid.uuid4().hex}"
    empty = count == 0
    state = " disabled='disabled'" if empty else (" checked='checked'" if expanded else "")
    counter = "" if count is None else f" <span class='mg-count'>({count})</span>"
    tip = "" if empty else " title='Expand/collapse section'"
    return Html(
        f"<li><input id='{ident}' class='mg-section-in' type='checkbox'{state}/>"
        f"<label for='{ident}' class='mg-label'{tip}>{esc(label)}{counter}</label>"
        f"<div class='mg-inline mg-preview'>{esc(preview)}</div>"
        f"<div class='mg-details'>{esc(details)}</div></li>"
    )


def attrs_list(mapping: Mapping[Any, Any]) -> Html:
    """A ``<dl>`` of names and values (user attributes, storage details).

    Examples
    --------
    >>> attrs_list({"source": "ERA5"})
    "<dl class='mg-attrs'><dt title='source'>source</dt><dd>ERA5</dd></dl>"
    """
    items = "".join(
        f"<dt{_attr('title', k)}>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in mapping.items()
    )
    return Html(f"<dl class='mg-attrs'>{items}</dl>")


def dims_list(shape: Mapping[str, int]) -> Html:
    """Dimension sizes as ``(time: 12, lat: 100)``, xarray's way.

    Examples
    --------
    >>> dims_list({"rows": 3})
    '(rows: 3)'
    """
    return esc("(" + ", ".join(f"{k}: {v:,}" for k, v in shape.items()) + ")")


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    numeric: Collection[int] = (),
    footer: Sequence[object] | None = None,
) -> Html:
    """A table with a header row; cells of the ``numeric`` columns are right-aligned.

    Examples
    --------
    >>> table(["tier", "keys"], [["hot", 2]], numeric={1}).count("<tr>")
    2
    """

    def cells(values: Sequence[object], tag: str) -> str:
        return "".join(
            f"<{tag} class='mg-num'>{esc(v)}</{tag}>" if i in numeric else f"<{tag}>{esc(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    head = f"<thead><tr>{cells(columns, 'th')}</tr></thead>"
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    foot = f"<tfoot><tr>{cells(footer, 'td')}</tr></tfoot>" if footer is not None else ""
    return Html(f"<table>{head}<tbody>{body}</tbody>{foot}</table>")


def repr_html(
    *,
    obj_type: str,
    text: str,
    sections: Sequence[str],
    name: object | None = None,
    badges: Sequence[object] = (),
    figure: str = "",
) -> Html:
    """A whole repr: style sheet, plain-text fallback, header, sections and a figure.

    Parameters
    ----------
    obj_type : str
        Shown first, e.g. ``"memories_geo.Entry"``.
    text : str
        The plain-text repr, shown where styles are stripped (untrusted notebooks).
    sections : list of Html
        From :func:`row` and :func:`section`.
    name : str, optional
        The object's name (a key).
    badges : list of str
        Short labels after the name (``"v3"``).
    figure : Html
        Shown to the right of the sections (a footprint picture).

    Examples
    --------
    >>> page = repr_html(obj_type="demo", text="demo", sections=[row("a", 1)])
    >>> page.startswith("<div><style>")
    True
    """
    header = f"<div class='mg-obj-type'>{esc(obj_type)}</div>"
    if name is not None:
        header += f"<div class='mg-name mg-mono'>{esc(name)}</div>"
    header += "".join(f"<div class='mg-badge'>{esc(b)}</div>" for b in badges)
    return Html(
        f"<div><style>{STYLE}</style>"
        f"<pre class='mg-text-repr-fallback'>{esc(text)}</pre>"
        "<div class='mg-wrap' style='display:none'>"
        f"<div class='mg-header'>{header}</div>"
        f"<div class='mg-body'><ul class='mg-sections'>{''.join(sections)}</ul>{figure}</div>"
        "</div></div>"
    )
