"""Per-epoch metric log, rewritten atomically as ``history.csv`` and ``history.json`` after every epoch."""
import csv
import json
import os
from typing import Any, Dict, List

from .._files import write_atomic, write_json  # noqa: F401  (write_json: the trainer's, through here)


def write_history(directory: str, history: List[Dict[str, Any]]) -> None:
    """Write the rows of ``history`` (one dict per epoch, same keys) to ``directory``/history.{csv,json}."""
    os.makedirs(directory, exist_ok=True)
    write_atomic(os.path.join(directory, "history.json"), json.dumps(history, indent=1))
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
    write_atomic(os.path.join(directory, "history.csv"), "".join(lines))


