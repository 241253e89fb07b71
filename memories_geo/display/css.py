"""The style sheet of every HTML repr: theme colours from the notebook's own variables.

Colours come from JupyterLab's ``--jp-*`` variables, then VS Code's ``--vscode-*``,
then light defaults; pages that mark a dark theme on ``html`` or ``body`` (Sphinx and
MkDocs Material themes, VS Code) get dark defaults. The sheet hides the plain-text
fallback: a notebook that strips styles (untrusted) shows the text repr instead.
"""

from __future__ import annotations

__all__ = ["STYLE"]

_DARK_PAGES = ", ".join(
    f"{page} .mg-wrap"
    for page in (
        "html[theme=dark]", "html[data-theme=dark]", "body[data-theme=dark]",
        "body.vscode-dark", "[data-md-color-scheme=slate]",
    )
)

STYLE = """
.mg-wrap {
  --mg-fg0: var(--jp-content-font-color0, var(--vscode-editor-foreground, rgba(0, 0, 0, 1)));
  --mg-fg2: var(--jp-content-font-color2, var(--vscode-descriptionForeground, rgba(0, 0, 0, 0.6)));
  --mg-fg3: var(--jp-content-font-color3, rgba(0, 0, 0, 0.4));
  --mg-border: var(--jp-border-color2, var(--vscode-editorWidget-border, #e0e0e0));
  --mg-disabled: var(--jp-layout-color3, #bdbdbd);
  --mg-row-alt: var(--jp-layout-color2, rgba(128, 128, 128, 0.1));
  --mg-mono: var(--jp-code-font-family, var(--vscode-editor-font-family, monospace));
  display: block !important;
  min-width: 300px;
  max-width: 860px;
  color: var(--mg-fg0);
  line-height: 1.45;
}
""" + _DARK_PAGES + """ {
  --mg-fg0: rgba(255, 255, 255, 1);
  --mg-fg2: rgba(255, 255, 255, 0.62);
  --mg-fg3: rgba(255, 255, 255, 0.4);
  --mg-border: #3a3a3a;
  --mg-disabled: #515151;
  --mg-row-alt: rgba(255, 255, 255, 0.06);
}
.mg-text-repr-fallback { display: none; }
.mg-header {
  padding: 6px 0;
  margin-bottom: 4px;
  border-bottom: solid 1px var(--mg-border);
}
.mg-header > div { display: inline; margin: 0 10px 0 2px; }
.mg-obj-type { color: var(--mg-fg2); }
.mg-name { font-weight: 600; }
.mg-badge {
  border: 1px solid var(--mg-border);
  border-radius: 3px;
  padding: 0 5px;
  color: var(--mg-fg2);
}
.mg-body { display: flex; flex-wrap: wrap; gap: 4px 20px; align-items: flex-start; }
.mg-sections {
  flex: 1 1 380px;
  max-width: 600px;
  min-width: 0;
  margin: 0 !important;
  padding-left: 0 !important;
  list-style: none !important;
  display: grid;
  grid-template-columns: 130px minmax(0, 1fr);
}
.mg-body > .mg-sections:only-child { max-width: none; }
.mg-sections > li { display: contents; }
.mg-label, .mg-inline { padding: 2px 0; margin: 0; }
.mg-label {
  grid-column: 1;
  color: var(--mg-fg2);
  font-weight: 500;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
  padding-left: 15px;
}
.mg-inline {
  grid-column: 2;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}
.mg-inline:hover { white-space: normal; overflow-wrap: anywhere; }
.mg-section-in { display: none !important; }
.mg-section-in + label { padding-left: 0; cursor: pointer; }
.mg-section-in + label:hover { color: var(--mg-fg0); }
.mg-section-in + label:before {
  display: inline-block;
  content: '\\25BA';
  font-size: 11px;
  width: 15px;
  text-align: center;
}
.mg-section-in:checked + label:before { content: '\\25BC'; }
.mg-section-in:disabled + label { cursor: default; color: var(--mg-fg2); }
.mg-section-in:disabled + label:before { color: var(--mg-disabled); }
.mg-section-in:checked ~ .mg-preview { visibility: hidden; }
.mg-details { display: none; grid-column: 1 / -1; margin: 0 0 6px 15px; overflow-x: auto; }
.mg-section-in:checked ~ .mg-details { display: block; }
.mg-count, .mg-muted { color: var(--mg-fg3); font-weight: normal; }
.mg-mono { font-family: var(--mg-mono); font-size: 95%; }
dl.mg-attrs {
  display: grid;
  grid-template-columns: 115px minmax(0, 1fr);
  margin: 0;
  padding: 0;
}
.mg-attrs dt, .mg-attrs dd { margin: 0; padding: 1px 10px 1px 0; }
.mg-attrs dt {
  color: var(--mg-fg2);
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}
.mg-attrs dd { white-space: pre-wrap; overflow-wrap: anywhere; }
.mg-wrap table {
  border-collapse: collapse;
  table-layout: auto;
  margin: 2px 0 6px 0;
  border: none;
  color: inherit;
  background: transparent;
  font-size: inherit;
}
.mg-wrap table thead th {
  color: var(--mg-fg2);
  font-weight: 500;
  border-bottom: 1px solid var(--mg-border);
}
.mg-wrap table th, .mg-wrap table td {
  text-align: left;
  padding: 2px 14px 2px 4px;
  border: none;
  white-space: nowrap;
  vertical-align: top;
  background: transparent;
  color: inherit;
}
.mg-wrap table tbody tr:nth-child(odd) { background: var(--mg-row-alt); }
.mg-wrap table tbody tr:nth-child(even) { background: transparent; }
.mg-wrap table tbody tr:hover { background: var(--mg-row-alt); }
.mg-wrap table tfoot td { border-top: 1px solid var(--mg-border); font-weight: 500; }
.mg-wrap table .mg-wrapping { white-space: normal; overflow-wrap: anywhere; }
.mg-wrap table .mg-num { text-align: right; font-variant-numeric: tabular-nums; }
.mg-added { color: #2f9e44; }
.mg-removed { color: #e03131; }
.mg-changed { color: #e8590c; }
.mg-figure { flex: 0 0 auto; width: max-content; margin: 4px 0 0 0; color: var(--mg-fg0); }
.mg-figure svg { display: block; }
.mg-figure figcaption { color: var(--mg-fg2); font-size: 85%; text-align: center; }
.mg-swatch {
  display: inline-block;
  width: 0.8em;
  height: 0.8em;
  margin-right: 5px;
  border-radius: 2px;
  vertical-align: -0.05em;
}
"""
