"""Execute notebooks headless and write the executed copies (and HTML) to an output folder.

    python scripts/run_notebooks.py notebooks/01_quickstart.ipynb --out out/
    python scripts/run_notebooks.py notebooks/*.ipynb --out out/ --no-html

Each notebook runs in a fresh kernel with its own folder as the working directory. Without
ANTHROPIC_API_KEY the notebooks use the bundled simulator (answers marked "[simulated ...]"). Exits non-zero
if any cell fails, after writing what ran so the failure can be read in the executed copy.

The HTML opens offline: it is JupyterLab's export without the scripts the stock template loads from public
CDNs (require.js, the widget manager, MathJax, Mermaid), and a widget is shown by the static HTML it saves
beside its view (the panel's last state), not by a widget manager.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run(path: Path, out: Path, *, html: bool, timeout: int) -> bool:
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    ok = True
    with tempfile.TemporaryDirectory() as sockets:
        # Local IPC sockets (in a temporary folder) rather than TCP: nothing listens on the network, and the
        # kernel has no reason to warn about unencrypted TCP. Windows has no IPC transport: TCP there.
        class Manager(AsyncKernelManager):
            def __init__(self, **kwargs: object) -> None:
                super().__init__(**kwargs)
                if os.name != "nt":
                    self.transport = "ipc"
                    self.ip = str(Path(sockets) / "kernel")

        client = NotebookClient(
            notebook,
            kernel_manager_class=Manager,  # the client owns it, so it shuts the kernel down at the end
            kernel_name="python3",
            timeout=timeout,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        except CellExecutionError as exc:
            ok = False
            print(f"FAILED {path.name}: {str(exc).strip().splitlines()[-1]}", file=sys.stderr)
    target = out / path.name
    nbformat.write(notebook, target)
    written = [str(target)]
    if html:
        body = offline_html(notebook)
        html_path = target.with_suffix(".html")
        html_path.write_text(body, encoding="utf-8")
        written.append(str(html_path))
    state = "ran" if ok else "FAILED"
    print(f"{state} {path.name} in {time.perf_counter() - started:.1f} s -> {', '.join(written)}")
    return ok


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def offline_html(notebook: nbformat.NotebookNode) -> str:
    """The notebook as one HTML page that loads nothing from the network (see the module docstring)."""
    import copy

    from nbconvert import HTMLExporter

    page = copy.deepcopy(notebook)
    page.metadata.pop("widgets", None)
    for cell in page.cells:
        kept = []
        for output in cell.get("outputs", ()):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                if "text/html" not in data:
                    # A bare widget view: without a widget manager the page would show its text/plain repr
                    # ("VBox(children=(...") instead. The panel's static copy is the output after it.
                    continue
                del data[WIDGET_VIEW]  # the widget's static snapshot stands in for the live view
            kept.append(output)
        if "outputs" in cell:
            cell.outputs = kept
    exporter = HTMLExporter(
        template_name="lab",
        template_file="offline.html.j2",
        extra_template_paths=[str(Path(__file__).resolve().parent / "offline_html")],
    )
    body, _ = exporter.from_notebook_node(page)
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = [
        run(p.resolve(), args.out, html=not args.no_html, timeout=args.timeout) for p in args.notebooks
    ]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
