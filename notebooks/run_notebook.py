"""Execute a notebook headless with nbclient, in its own folder; fail on the first error.

Usage: python notebooks/run_notebook.py notebooks/pickle_models.ipynb
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: Path, timeout: int = 600) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return notebook


if __name__ == "__main__":
    executed = run(Path(sys.argv[1]))
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stdout":
                print(output["text"], end="")
