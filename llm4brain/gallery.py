"""A static HTML gallery of a run's executed notebooks: ``make gallery``.

``make reproduce`` leaves one executed notebook per source under ``runs/<profile>/notebooks``.
:func:`build_gallery` renders each with nbconvert's ``lab`` template (figures stay inline as
``data:`` images, so a page is one self-contained file) and writes an ``index.html`` that lists
them in order with the notebook's title, its first figure as a thumbnail, its wall time (from
papermill's metadata) and when it ran. Open ``runs/<profile>/gallery/index.html`` in any
browser, or publish the folder (e.g. as a CI artefact) for students to read without Python.

The gallery is a rendering of the run, rebuilt from the notebooks every time; it holds no
result of its own.

>>> build_gallery(load_config("default"))  # doctest: +SKIP
PosixPath('runs/default/gallery/index.html')
"""
from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

__all__ = ["executed_notebooks", "notebook_page", "build_gallery", "check_in_browser", "main"]

_EXECUTED = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")


def executed_notebooks(notebook_dir: Path) -> list[Path]:
    """The executed notebooks ``NN_name.ipynb`` of a run, in order (not the ``.src``, ``.part``
    or ``.failed`` files that ``make`` leaves while or after a notebook runs)."""
    notebook_dir = Path(notebook_dir)
    if not notebook_dir.is_dir():
        raise FileNotFoundError(f"{notebook_dir} does not exist: run `make reproduce` (or "
                                "`make nb NB=..`) for this profile first")
    found = sorted(p for p in notebook_dir.iterdir() if _EXECUTED.match(p.name))
    if not found:
        raise FileNotFoundError(f"no executed notebook (NN_name.ipynb) in {notebook_dir}: run "
                                "`make reproduce` for this profile first")
    return found


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def _images(nb) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "image/png" in data:
                out.append("data:image/png;base64," + "".join(data["image/png"]).strip())
    return out


def notebook_page(path: Path, out_dir: Path, exporter=None) -> dict:
    """Render one executed notebook to ``out_dir/<name>.html``; return its index entry:
    ``name``, ``title``, ``html`` (file name), ``seconds``, ``started``, ``thumbnail`` (a
    ``data:`` URI or ``""``) and ``n_figures``."""
    import nbformat
    from nbconvert import HTMLExporter

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - name the file whatever nbformat raised
        raise ValueError(f"{path} is not a readable notebook ({e}); rerun it with "
                         f"`make nb NB={path.stem[:2]}`") from e
    exporter = exporter or HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb)
    target = Path(out_dir) / f"{path.stem}.html"
    target.write_text(body, encoding="utf-8")
    meta = nb.metadata.get("papermill", {})
    images = _images(nb)
    return dict(name=path.stem, title=_title(nb) or path.stem, html=target.name,
                        seconds=meta.get("duration"), started=(meta.get("start_time") or "")[:19],
                        thumbnail=images[0] if images else "", n_figures=len(images))


_STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}h1{font-size:1.6rem}ol{list-style:none;padding:0}li{display:flex;gap:1rem;
align-items:center;border-bottom:1px solid #ddd;padding:.8rem 0}li img{width:14rem;
height:auto;border:1px solid #ccc}li .none{width:14rem;color:#888}.meta{color:#666;
font-size:.9rem}a{color:#1f5fa8;text-decoration:none;font-weight:600}"""


def _index(pages: list[dict], profile: str, run_dir: Path) -> str:
    rows = []
    for p in pages:
        thumb = (f'<img src="{p["thumbnail"]}" alt="first figure of {html.escape(p["name"])}">'
                 if p["thumbnail"] else '<span class="none">(no figure)</span>')
        secs = p["seconds"]
        when = f'{secs / 60:.1f} min' if isinstance(secs, (int, float)) else "time not recorded"
        rows.append(f'<li>{thumb}<div><a href="{html.escape(p["html"])}">{html.escape(p["name"])}'
                    f'</a><div>{html.escape(p["title"])}</div><div class="meta">{when} · '
                    f'{p["n_figures"]} figure(s) · ran {html.escape(p["started"] or "?")}'
                    f'</div></div></li>')
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>llm4brain · {html.escape(profile)} run</title><style>{_STYLE}</style>"
            f"</head><body><h1>llm4brain · executed notebooks of the <code>{html.escape(profile)}"
            f"</code> run</h1><p class=\"meta\">Rendered from <code>{html.escape(str(run_dir))}"
            "/notebooks</code>; each page is the notebook as it ran, with its figures inline."
            f"</p><ol>{''.join(rows)}</ol></body></html>\n")


def build_gallery(cfg, out_dir: Path | None = None, progress: bool = True,
                  notebook_dir: Path | None = None) -> Path:
    """Render every executed notebook of ``cfg``'s run (or of ``notebook_dir``) and an index;
    return the index's path (default ``<run_dir>/gallery/index.html``)."""
    from nbconvert import HTMLExporter

    notebooks = executed_notebooks(Path(notebook_dir) if notebook_dir else cfg.run_dir / "notebooks")
    out_dir = Path(out_dir) if out_dir else cfg.run_dir / "gallery"
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    pages = []
    for path in notebooks:
        if progress:
            print(f"gallery: {path.name}", flush=True)
        pages.append(notebook_page(path, out_dir, exporter))
    index = out_dir / "index.html"
    index.write_text(_index(pages, cfg.profile, cfg.run_dir), encoding="utf-8")
    (out_dir / "pages.json").write_text(json.dumps(
        [{k: v for k, v in p.items() if k != "thumbnail"} for p in pages], indent=1))
    return index


_IMAGES_JS = ("return Array.from(document.images).map("
              "i => [i.complete && i.naturalWidth > 0, i.naturalWidth, i.src.slice(0, 22)]);")


def check_in_browser(index: Path, pages: int | None = 1, timeout_s: float = 60.0) -> dict:
    """Open the gallery's index and its first ``pages`` notebook pages (None: all) in headless
    Chromium (selenium + the system's ``chromedriver``; ``make browser`` installs both) and
    report, per page, how many ``<img>`` it holds and how many the browser decoded.

    Returns ``{file name: {"images": n, "loaded": k, "links": [...]}}``.
    """
    import shutil

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
    except ImportError as e:
        raise ImportError("check_in_browser needs selenium: pip install -e '.[test]'") from e
    driver_path = shutil.which("chromedriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not driver_path or not browser:
        raise FileNotFoundError("Chromium and chromedriver are not installed: run `make browser` "
                                "(apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--allow-file-access-from-files"):
        opts.add_argument(a)
    index = Path(index).resolve()
    out: dict = {}
    with webdriver.Chrome(service=Service(driver_path), options=opts) as drv:
        drv.set_page_load_timeout(timeout_s)
        drv.get(index.as_uri())
        links = [a.get_attribute("href") for a in drv.find_elements(By.CSS_SELECTOR, "a[href]")]
        imgs = drv.execute_script(_IMAGES_JS)
        out[index.name] = dict(images=len(imgs), loaded=sum(bool(i[0]) for i in imgs), links=links)
        for href in links[:pages] if pages is not None else links:
            drv.get(href)
            imgs = drv.execute_script(_IMAGES_JS)
            out[href.rsplit("/", 1)[-1]] = dict(images=len(imgs), loaded=sum(bool(i[0]) for i in imgs),
                                               links=[])
    return out


def main(argv: list[str] | None = None) -> int:
    from .config import load_config

    ap = argparse.ArgumentParser(prog="python -m llm4brain.gallery", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--out", default=None, help="folder (default <run_dir>/gallery)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--check", action="store_true",
                    help="then open every page in headless Chromium and count the figures it loads")
    args = ap.parse_args(argv)
    index = build_gallery(load_config(args.profile), args.out, progress=not args.quiet)
    print(f"gallery: {index}")
    if args.check:
        report = check_in_browser(index, pages=None)
        bad = {k: v for k, v in report.items() if v["loaded"] < v["images"]}
        for k, v in report.items():
            print(f"  {k}: {v['loaded']}/{v['images']} figures loaded")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
