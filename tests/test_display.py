"""Notebook views: HTML reprs (well-formed, escaped, rounded, theme-aware), tables, plots."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from shapely.geometry import box

import memories_geo as mg
from memories_geo.display import format_bbox, human_size, human_time, human_time_range, size_unit
from memories_geo.display.css import STYLE
from memories_geo.entry import FRAME_COLUMNS, EntryList
from memories_geo.monitor.usage import tier_usage

SVG = "{http://www.w3.org/2000/svg}"

#: A footprint whose edges print with 15+ digits.
FIELD = (5.123456789012345, 52.09012345678901, 5.1298765432109876, 52.09498765432101)


def parse(page: str) -> ET.Element:
    """The repr as an XML tree: fails on any unclosed tag, bad attribute or stray '<'."""
    return ET.fromstring(page)


def texts(root: ET.Element) -> str:
    return " ".join(t.strip() for t in root.itertext() if t.strip())


@pytest.fixture
def mem(tmp_path: Path) -> mg.Memory:
    return mg.Memory(tmp_path / "home")


@pytest.fixture
def fields() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"name": ["a", "b"], "area": [1.5, 2.5]},
                            geometry=[box(*FIELD), box(5.125, 52.091, 5.126, 52.092)], crs="EPSG:4326")


@pytest.fixture
def raster() -> xr.Dataset:
    lat = np.arange(59.875, 34.875, -0.25)
    lon = np.arange(-9.875, 20.0, 0.25)
    data = np.zeros((3, lat.size, lon.size), dtype="float32")
    time = pd.date_range("2024-01-01", periods=3, freq="MS")
    ds = xr.Dataset({"t2m": (("time", "lat", "lon"), data)}, coords={"time": time, "lat": lat, "lon": lon})
    return ds.rio.write_crs("EPSG:4326")


# -- the entry ---------------------------------------------------------------------------


def test_entry_html_is_well_formed_with_a_rounded_bbox(mem, fields):
    entry = mem.save(fields, "nl/fields", attrs={"source": "survey"}, tags=["qa"])
    assert entry.bbox == pytest.approx(FIELD)
    page = entry._repr_html_()
    root = parse(page)
    shown = texts(root)
    assert "(5.12346, 52.09012, 5.12988, 52.09499)" in shown
    for edge in entry.bbox:
        assert repr(edge) not in page, "the 15-digit bbox must not be shown"
    assert "(5.12346, 52.09012, 5.12988, 52.09499)" in repr(entry)
    assert repr(entry.bbox[0]) not in repr(entry)
    for expected in ("nl/fields", "v1", "geoparquet (vector)", "EPSG:4326", "(rows: 2)", "survey", "qa",
                     human_size(entry.size_bytes), human_time(entry.created_at), entry.checksum[:12]):
        assert expected in shown, expected
    assert next(texts(label) for label in root.iter("label")) == "Columns (2)"


def test_entry_html_has_collapsible_sections_and_a_text_fallback(mem, fields):
    page = mem.save(fields, "f", attrs={f"a{i}": i for i in range(20)})._repr_html_()
    root = parse(page)
    toggles = {texts(label).split(" (")[0]: root.find(f".//input[@id='{label.get('for')}']")
               for label in root.iter("label")}
    assert set(toggles) == {"Columns", "Attributes", "Storage"}
    assert toggles["Columns"].get("checked") == "checked"
    assert toggles["Attributes"].get("checked") is None, "20 attributes start closed"
    assert toggles["Storage"].get("checked") is None
    ids = [i.get("id") for i in root.iter("input")]
    assert len(set(ids)) == len(ids)
    fallback = root.find(".//pre[@class='mg-text-repr-fallback']")
    assert fallback is not None
    assert fallback.text.startswith("<memories_geo.Entry 'f' v1>")
    wrap = root.find(".//div[@class='mg-wrap']")
    assert wrap.get("style") == "display:none", "shown only by the style sheet (untrusted notebooks)"


def test_user_text_is_escaped(mem, fields):
    attack = "<script>alert('x')</script>"
    entry = mem.save(fields, "fields<script>", attrs={attack: attack, "html": "<b>&amp;</b>"}, tags=[attack])
    for page in (entry._repr_html_(), EntryList([entry])._repr_html_(), mem._repr_html_()):
        root = parse(page)
        assert not list(root.iter("script"))
        assert not list(root.iter("b"))
        assert "<script>" not in page
        assert "&lt;script&gt;" in page
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in entry._repr_html_()


def test_entry_footprint_picture(mem, fields, raster):
    page = mem.save(raster, "era5/t2m")._repr_html_()
    svg = parse(page).find(f".//{SVG}svg")
    assert svg is not None
    assert svg.get("viewBox") == "-180 -90 360 180"
    group = [g for g in svg.iter(f"{SVG}g") if g.findtext(f"{SVG}title") == "era5/t2m v1"]
    rect = group[0].find(f"{SVG}rect")
    drawn = [float(rect.get(a)) for a in ("x", "y", "width", "height")]
    assert drawn == pytest.approx([-10.0, -60.0, 30.0, 25.0]), "lon/lat box, y flipped"
    assert group[0].find(f"{SVG}circle") is None
    land = [p for p in svg.iter(f"{SVG}path") if p.get("fill") == "currentColor"]
    assert land
    assert len(land[0].get("d")) > 1000
    # a field of a few hundred metres gets a ring to be seen at world scale
    tiny = parse(mem.save(fields, "nl/fields")._repr_html_()).find(f".//{SVG}svg")
    assert tiny.find(f".//{SVG}circle") is not None


def test_variables_of_a_dataarray(mem, raster):
    named = mem.save(raster.t2m, "named")
    assert named.variables == ("t2m",)
    assert "t2m" in texts(parse(named._repr_html_()).find(".//ul[@class='mg-sections']"))
    unnamed = mem.save(raster.t2m.rename(None), "unnamed")
    assert unnamed.variables == ()
    assert "unnamed DataArray" in texts(parse(unnamed._repr_html_()))
    assert "variables=unnamed DataArray" in repr(unnamed)


# -- the collection ----------------------------------------------------------------------


def test_memory_html_usage_table(mem, fields, raster):
    a = mem.save(fields, "a")
    a2 = mem.save(fields.iloc[:1], "a", mode="w")
    b = mem.save(raster, "b", tier="warm")
    root = parse(mem._repr_html_())
    body = root.find(".//table/tbody")
    cells = {texts(tr.findall("td")[0]).split()[0]: [texts(td) for td in tr.findall("td")] for tr in body}
    assert list(cells) == mem.tiers.names
    usage = mem.monitor.get_storage_usage()
    hot_size, hot_old = human_size(a.size_bytes + a2.size_bytes), human_size(a.size_bytes)
    assert cells["hot"][2:7] == ["1", "2", str(usage["hot"].objects), hot_size, hot_old]
    assert cells["warm"][2:7] == ["1", "1", str(usage["warm"].objects), human_size(b.size_bytes), "0 B"]
    assert cells["cold"][2:7] == ["0", "0", "0", "0 B", "0 B"]
    assert usage["hot"].objects >= 2
    assert cells["hot"][7] == human_size(usage["hot"].available_bytes)
    assert cells["hot"][8] == f"{usage['hot'].utilization_percentage:.1f} %"
    assert cells["hot"][1] == mem.tiers.tier_config("hot").url
    total = [texts(td) for td in root.find(".//table/tfoot/tr")]
    assert total[2:4] == ["2", "3"]
    assert len(parse(mem._repr_html_()).findall(f".//{SVG}svg//{SVG}g")) == 2


def test_memory_html_never_shows_credentials(tmp_path):
    config = mg.StorageConfig.from_dict({"home": str(tmp_path / "home"), "tiers": {
        "warm": {"url": "postgresql://geo:hunter2-secret@127.0.0.1:1/geo"},
        "cold": {"url": "s3://AKIDEXAMPLE:s3cr3t-key@bucket/geo?token=t0k3n-value"},
    }})
    mem = mg.Memory(config)
    page = mem._repr_html_()
    parse(page)
    for secret in ("hunter2-secret", "s3cr3t-key", "t0k3n-value"):
        assert secret not in page
    assert "postgresql://geo:***@127.0.0.1:1/geo" in page


def test_tier_usage_counts_retired_and_old_versions(mem, fields):
    mem.save(fields, "a")
    mem.save(fields, "a", mode="w", tier="cold")
    mem.save(fields, "b")
    mem.checkpoints.save("keep-b")
    mem.delete("b")
    usage = {u.tier: u for u in tier_usage(mem.catalog.current_entries(),
                                          mem.catalog.all_versions(include_retired=True), mem.tiers.names)}
    assert (usage["hot"].keys, usage["hot"].versions) == (0, 2), "a v1 and the retired b, both kept"
    assert (usage["cold"].keys, usage["cold"].versions) == (1, 1)
    assert usage["hot"].current_bytes == 0
    assert usage["hot"].retained_bytes > 0


# -- lists and tables ----------------------------------------------------------------------


def test_versions_as_a_table(mem, fields):
    mem.save(fields, "a")
    mem.save(fields, "a", mode="w", tier="warm")
    versions = EntryList(mem.versions("a"))
    root = parse(versions._repr_html_())
    head = [texts(th) for th in root.find(".//table/thead/tr")]
    assert head == ["version", "created", "tier", "format", "kind", "size", "checksum"]
    rows = [[texts(td) for td in tr] for tr in root.find(".//table/tbody")]
    assert [r[0] for r in rows] == ["v1", "v2"]
    assert [r[2] for r in rows] == ["hot", "warm"]
    frame = versions.to_frame()
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert list(frame.version) == [1, 2]
    lines = repr(versions).splitlines()
    assert lines[0] == "<memories_geo.EntryList: 2 entries>"
    assert "v2" in lines[2]
    assert "warm" in lines[2]
    assert repr(EntryList()) == "EntryList([])"


def test_ls_is_compact_and_search_maps(mem, fields, raster):
    mem.save(fields, "a")
    mem.save(raster, "b", tier="warm")
    table = mem.ls()
    assert type(table) is pd.DataFrame
    assert list(table.columns) == list(FRAME_COLUMNS)
    assert list(table["size"]) == [human_size(mem.info(k).size_bytes) for k in ("a", "b")]
    assert isinstance(table["modified"].dtype, pd.DatetimeTZDtype)
    assert str(table["modified"].dt.tz) == "UTC"
    assert (table["modified"].dt.microsecond == 0).all()
    hits = mem.search(bbox=(5, 52, 6, 53))
    assert isinstance(hits, gpd.GeoDataFrame)
    assert list(hits.columns) == [*FRAME_COLUMNS, "geometry"]
    assert list(hits.key) == ["a", "b"]
    assert hits.geometry.iloc[0].bounds == pytest.approx(FIELD)


def test_checkpoint_diff_table_and_repr(mem, fields):
    mem.save(fields, "a")
    mem.save(fields, "b")
    first = mem.checkpoints.save("one")
    mem.save(fields, "a", mode="w")
    mem.save(fields, "c")
    mem.delete("b")
    diff = mem.checkpoints.diff(first.id, "current")
    root = parse(diff._repr_html_())
    rows = {texts(tr[1]): [texts(td) for td in tr] for tr in root.find(".//table/tbody")}
    assert list(rows) == ["a", "b", "c"]
    old_a, new_a = diff.changed["a"]
    assert rows["a"][0] == "~ changed"
    assert rows["a"][2].endswith(old_a[-8:])
    assert rows["a"][3].endswith(new_a[-8:])
    assert rows["b"][0] == "- removed"
    assert rows["b"][3] == "absent"
    assert rows["c"][0] == "+ added"
    assert rows["c"][2] == "absent"
    titles = [s.get("title") for s in root.iter("span") if s.get("title")]
    assert {old_a, new_a} <= set(titles), "full version ids in the tooltips"
    text = repr(diff).splitlines()
    assert text[0] == "<memories_geo.CheckpointDiff: 1 added, 1 removed, 1 changed>"
    assert [line.split()[:2] for line in text[1:]] == [["~", "a"], ["-", "b"], ["+", "c"]]
    same = mem.checkpoints.diff("current", "current")
    assert repr(same) == "<memories_geo.CheckpointDiff: no changes>"
    assert "none" in texts(parse(same._repr_html_()))


def test_checkpoint_list_and_info(mem, fields):
    mem.save(fields, "a")
    mem.checkpoints.save("r", message="before <cleanup>")
    listing = mem.checkpoints.list()
    root = parse(listing._repr_html_())
    head = [texts(th) for th in root.find(".//table/thead/tr")]
    assert head[:5] == ["name", "time", "kind", "keys", "size"]
    assert "before <cleanup>" in texts(root)
    assert STYLE in listing._repr_html_()
    parse(listing[0]._repr_html_())
    assert "'r'" in repr(listing[0])
    assert "<memories_geo.CheckpointList: 1 checkpoint>" in repr(listing)


# -- themes, units -----------------------------------------------------------------------


def test_style_follows_the_notebook_theme():
    for variable in ("--jp-content-font-color0", "--jp-border-color2", "--jp-layout-color2",
                     "--vscode-editor-foreground"):
        assert f"var({variable}" in STYLE
    for dark in ("html[theme=dark] .mg-wrap", "body.vscode-dark .mg-wrap",
                 "[data-md-color-scheme=slate] .mg-wrap"):
        assert dark in STYLE
    assert not re.search(r"color:\s*(black|white|#000|#fff)\b", STYLE), "no fixed text colours"


@pytest.mark.parametrize(("value", "text"), [
    ((-180.0, -90.0, 180.00000000000006, 83.64513000000001), "(-180, -90, 180, 83.6451)"),
    ((-0.00001, 0.0, 10.0, 10.0), "(0, 0, 10, 10)"),
    ((1.0, 2.0, 1.0, 2.0), "(1, 2, 1, 2)"),
    ((5.1234567, 52.1, 5.1234987, 52.10002), "(5.1234567, 52.1, 5.1234987, 52.10002)"),
])
def test_format_bbox(value, text):
    assert format_bbox(value) == text


def test_units():
    assert [human_size(n) for n in (0, 1023, 1024, 5 * 1024**3)] == ["0 B", "1023 B", "1.0 KiB", "5.0 GiB"]
    assert size_unit(3 * 1024**2) == ("MiB", 1024**2)
    assert human_time("2024-03-01T12:30:05.123+01:00") == "2024-03-01 11:30:05 UTC"
    assert human_time(None) == "—"
    assert human_time_range("2024-01-01T00:00:00", "2024-01-01T06:00:00") == \
        "2024-01-01 00:00:00 UTC → 2024-01-01 06:00:00 UTC"


# -- plots -------------------------------------------------------------------------------


@pytest.fixture
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_usage_plot_bar_heights(mem, fields, raster, plt):
    a = mem.save(fields, "a")
    a2 = mem.save(fields, "a", mode="w")
    b = mem.save(raster, "b", tier="warm")
    ax = mem.plot.usage()
    names = mem.tiers.names
    assert len(ax.patches) == 2 * len(names), "current and older bars for every tier"
    unit, factor = size_unit(max(a.size_bytes + a2.size_bytes, b.size_bytes))
    assert ax.get_ylabel() == f"stored size ({unit})"
    current, older = ax.patches[: len(names)], ax.patches[len(names):]
    heights = dict(zip(names, [p.get_height() for p in current], strict=True))
    assert heights == pytest.approx({"hot": a2.size_bytes / factor, "warm": b.size_bytes / factor,
                                     "cold": 0.0, "glacier": 0.0})
    assert older[0].get_height() == pytest.approx(a.size_bytes / factor)
    assert older[0].get_y() == pytest.approx(a2.size_bytes / factor), "older versions stack on top"
    assert older[1].get_height() == 0.0
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    by_format = mem.plot.usage(by="format")
    assert [t.get_text() for t in by_format.get_xticklabels()] == sorted({a.format, b.format})
    formats = dict(zip(sorted({a.format, b.format}), by_format.patches[:2], strict=True))
    assert formats[a.format].get_height() == pytest.approx(a2.size_bytes / factor)
    assert formats[b.format].get_height() == pytest.approx(b.size_bytes / factor)
    assert by_format.get_title() == "Storage per format"
    with pytest.raises(mg.OptionError, match="'tier', 'format', 'kind'"):
        mem.plot.usage(by="colour")


def test_footprints_plot(mem, fields, raster, plt):
    mem.save(fields, "nl/fields")
    mem.save(raster, "era5/t2m", tier="warm")
    mem.save(raster.isel(lat=slice(0, 10)), "era5/north", tier="warm")
    _fig, given = plt.subplots()
    ax = mem.plot.footprints(ax=given)
    assert ax is given
    assert len(ax.patches) == 3
    colors = {p.get_facecolor()[:3] for p in ax.patches}
    assert len(colors) == 2, "coloured by tier"
    assert ax.get_xlim()[0] <= -10
    assert ax.get_xlim()[1] >= 20
    only = mem.plot.footprints(key="era5/*", land=False)
    assert len(only.patches) == 2
    assert not only.collections
    assert [t.get_text() for t in only.get_legend().get_texts()] == ["warm"]


def test_plots_name_the_extra_when_matplotlib_is_missing(mem, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'memories-geo[plot]'")):
        mem.plot.usage()


def test_reprs_do_not_import_plotting_or_map_libraries(tmp_path):
    code = (
        "import sys, memories_geo as mg, geopandas as gpd\n"
        "from shapely.geometry import box\n"
        f"mem = mg.Memory({str(tmp_path / 'home')!r})\n"
        "e = mem.save(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs=4326), 'k')\n"
        "e._repr_html_(); mem._repr_html_(); mem.plot\n"
        "print(','.join(m for m in ('matplotlib', 'folium', 'mapclassify') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
