"""Per-epoch metric log, rewritten atomically as ``history.csv`` and ``history.json`` after every epoch."""
import csv
import json
import os
from typing import Any, Dict, List


def _atomic_write(path: str, text: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def write_history(directory: str, history: List[Dict[str, Any]]) -> None:
    """Write the rows of ``history`` (one dict per epoch, same keys) to ``directory``/history.{csv,json}."""
    os.makedirs(directory, exist_ok=True)
    _atomic_write(os.path.join(directory, "history.json"), json.dumps(history, indent=1))
    if not history:
        return
    columns = list(history[0])
    lines = []

    class _Sink:
        def write(self, text: str) -> None:
            lines.append(text)

    writer = csv.DictWriter(_Sink(), fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    _atomic_write(os.path.join(directory, "history.csv"), "".join(lines))


def write_json(path: str, payload: Dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _atomic_write(path, json.dumps(payload, indent=1))
