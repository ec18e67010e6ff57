"""The resumable, multi-process labelling driver behind ``equiforce label``."""
import contextlib
import dataclasses
import importlib.metadata
import multiprocessing
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

from . import _store
from ._gfn2 import METHODS, LabelSettings, label_task, make_task

#: Thread-count variables set to 1 in every worker process before it loads tblite (OpenMP, BLAS).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: ``atoms.info`` keys of an input frame dropped from its output frame (old labels; ours replace them).
_OLD_LABEL_KEYS = ("energy", "free_energy", "forces", "dipole", "stress", "scf_retry")


def label_frames(
    input_path: str,
    output_path: str,
    method: str = "gfn2",
    workers: int = 1,
    charge: Optional[int] = None,
    accuracy: float = 1.0,
    electronic_temperature_K: float = 300.0,
    max_iterations: int = 250,
    retry: bool = True,
    retry_failed: bool = False,
    max_frames: Optional[int] = None,
    progress: bool = True,
) -> Dict[str, Any]:
    """Label every frame of ``input_path`` with GFN2-xTB (tblite), appending to ``output_path``; resumable.

    Each output frame is the input frame (its ``info`` and per-atom arrays kept) with the energy (eV), forces
    (eV/Å) and, for a frame without periodic boundaries, the dipole (e·Å) as calculator results, so
    ``ase.io.read`` gives them through ``get_potential_energy()``, ``get_forces()`` and
    ``get_dipole_moment()`` (the file says ``energy=``, ``forces``, ``dipole=``). ``info`` also gets
    ``label_source_index`` (index of the frame in the input file), ``label_method``, ``label_scf_attempt``
    (0, or 1 after the damped retry) and ``charge`` (the total charge used, e).

    Frames are written as they finish (with several workers not in input order); once every input frame is
    labelled or failed, the output is rewritten in input order (atomically). Every frame is appended in one
    write + fsync, so a killed run loses only the frames in flight; a rerun cuts off an incomplete last
    record and labels only the missing frames. ``OUTPUT.label.json`` records the input's SHA-256, the settings
    and tblite's version: a rerun with a different input, settings or tblite is refused. A frame whose SCF
    fails (after the retry) is recorded in ``OUTPUT.failures.jsonl`` and skipped, then and in later runs unless
    ``retry_failed``.

    Parameters
    ----------
    input_path : str
        Frames in any format ASE reads (positions and cells in Å); every frame periodic in all three
        directions or in none; elements H..Rn.
    output_path : str
        Extended XYZ file to write or continue.
    method : str
        ``"gfn2"`` (GFN2-xTB).
    workers : int
        Worker processes (each single-threaded: ``OMP_NUM_THREADS=1``). 0 labels in this process with its
        thread settings (no start-up cost; what the tests use).
    charge : int, optional
        Total charge (e) of frames whose ``info`` has no ``"charge"``; default 0.
    accuracy, electronic_temperature_K, max_iterations
        tblite's numerical accuracy, electronic temperature (K) and SCF iteration limit.
    retry : bool
        Retry a failed SCF once with mixer damping 0.2 and 4 × ``max_iterations`` iterations.
    retry_failed : bool
        Label again the frames an earlier run recorded as failed.
    max_frames : int, optional
        Label at most this many frames in this call (a run in chunks; the next call continues).
    progress : bool
        A tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``n_input``, ``n_labelled`` (in the output now), ``n_failed`` (recorded failures now), ``n_remaining``,
        ``labelled_now``, ``failed_now``, ``failures`` (the records of the failures of this call: ``index``,
        ``error``, ``attempts``), ``skipped_failed`` (earlier failures not retried), ``seconds`` (this call),
        ``seconds_to_first_result``, ``workers``, ``in_input_order`` and the paths.

    Raises
    ------
    ValueError
        (``LabelError`` for a bad frame) before any work starts: an element outside H..Rn, partial periodicity,
        a non-integer charge, or an output made from another input or with other settings.
    """
    from ase.io import read

    from ..hashing import file_sha256

    started = time.perf_counter()
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    settings = LabelSettings(method=method, accuracy=accuracy, electronic_temperature_K=electronic_temperature_K,
                             max_iterations=max_iterations, retry=retry,
                             default_charge=0 if charge is None else int(charge))
    if not os.path.exists(input_path):
        raise FileNotFoundError(f"no input file {input_path}")
    frames = read(input_path, index=":")
    tasks = [make_task(atoms, k, settings) for k, atoms in enumerate(frames)]  # checks every frame first

    identity = {
        "input_sha256": file_sha256(input_path),
        "n_input": len(frames),
        "settings": dataclasses.asdict(settings),
        "tblite_version": importlib.metadata.version("tblite"),
    }
    sidecar = _store.sidecar_path(output_path)
    _check_identity(output_path, sidecar, identity)

    records = _store.scan_output(output_path) if os.path.exists(output_path) else []
    done = {index for index, _, _ in records}
    if len(done) < len(records) or any(index >= len(frames) for index in done):
        raise ValueError(f"{output_path}: repeated or out-of-range {_store.SOURCE_INDEX_KEY} values; it does not "
                         f"match {input_path} ({len(frames)} frames)")
    failures_file = _store.failures_path(output_path)
    failures = _store.read_failures(failures_file)
    if retry_failed and failures:
        failures = {}
        _store.write_failures(failures_file, failures)
    todo = [k for k in range(len(frames)) if k not in done and k not in failures]
    if max_frames is not None:
        todo = todo[:max_frames]
    _store.write_sidecar(sidecar, dict(identity, input_path=os.path.abspath(input_path), status="running",
                                       n_labelled=len(done), n_failed=len(failures)))

    new_failures: List[dict] = []
    labelled_now, first_result = 0, None
    bar = _progress_bar(len(frames), len(done) + len(failures), METHODS[method], progress)
    try:
        with open(output_path, "ab") as out, open(failures_file, "ab") as failed, \
                contextlib.closing(_results([tasks[k] for k in todo], workers)) as results:
            for result in results:
                first_result = first_result or time.perf_counter() - started
                if "error" in result:
                    record = {"index": result["index"], "error": result["error"], "attempts": result["attempts"]}
                    _store.append_record(failed, _store.failure_line(record))
                    new_failures.append(record)
                    failures[result["index"]] = record
                else:
                    labelled = _labelled_atoms(frames[result["index"]], result, tasks[result["index"]]["charge"],
                                               METHODS[method])
                    _store.append_record(out, _store.frame_text(labelled))
                    done.add(result["index"])
                    labelled_now += 1
                bar.update(1)
                bar.set_postfix(failed=len(failures), refresh=False)
    finally:
        bar.close()
        if os.path.exists(failures_file) and os.path.getsize(failures_file) == 0:
            os.remove(failures_file)
        remaining = len(frames) - len(done) - len(failures)
        _store.write_sidecar(sidecar, dict(identity, input_path=os.path.abspath(input_path),
                                           status="complete" if remaining == 0 else "partial",
                                           n_labelled=len(done), n_failed=len(failures)))

    in_order = False
    if remaining == 0 and os.path.exists(output_path):
        _store.reorder_output(output_path, _store.scan_output(output_path))
        in_order = True
    return {
        "input": input_path,
        "output": output_path,
        "sidecar": sidecar,
        "failures_file": failures_file,
        "n_input": len(frames),
        "n_labelled": len(done),
        "n_failed": len(failures),
        "n_remaining": remaining,
        "labelled_now": labelled_now,
        "failed_now": len(new_failures),
        "failures": new_failures,
        "skipped_failed": 0 if retry_failed else len(failures) - len(new_failures),
        "seconds": time.perf_counter() - started,
        "seconds_to_first_result": first_result,
        "workers": workers,
        "in_input_order": in_order,
    }


def _check_identity(output_path: str, sidecar: str, identity: Dict[str, Any]) -> None:
    """Refuse to continue an output made from another input, with other settings or another tblite."""
    if not os.path.exists(sidecar):
        if os.path.exists(output_path) and os.path.getsize(output_path) > 0:
            raise ValueError(f"{output_path} exists but has no {os.path.basename(sidecar)}: it was not written by "
                             "equiforce label; choose another output or remove it")
        return
    recorded = _store.read_sidecar(sidecar)
    for key, value in identity.items():
        if recorded.get(key) != value:
            what = {"input_sha256": "was made from another input file (SHA-256 differs)",
                    "n_input": "was made from an input with another number of frames",
                    "settings": "was made with other labelling settings",
                    "tblite_version": "was made with another tblite version"}[key]
            raise ValueError(f"{output_path} {what}: recorded {recorded.get(key)!r}, now {value!r}. Use another "
                             f"output, or remove {output_path} and {os.path.basename(sidecar)} to start afresh")


def _labelled_atoms(atoms, result: Dict[str, Any], charge: int, method_name: str):
    """The input frame with its new labels attached as a SinglePointCalculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    for key in _OLD_LABEL_KEYS:
        out.info.pop(key, None)
    out.arrays.pop("forces", None)
    out.info[_store.SOURCE_INDEX_KEY] = int(result["index"])
    out.info["label_method"] = method_name
    out.info["label_scf_attempt"] = int(result["scf_attempt"])
    out.info["charge"] = int(charge)
    properties = {"energy": result["energy"], "forces": result["forces"]}
    if result["dipole"] is not None:
        properties["dipole"] = result["dipole"]
    out.calc = SinglePointCalculator(out, **properties)
    return out


def _results(tasks: List[Dict[str, Any]], workers: int) -> Iterator[Dict[str, Any]]:
    """Label ``tasks``: in this process (``workers=0``) or in worker processes, yielding results as they finish."""
    if not tasks:
        return
    if workers == 0:
        for task in tasks:
            yield label_task(task)
        return
    context = multiprocessing.get_context("spawn")  # never fork a process that holds torch's threads
    with _single_threaded_environment():
        pool = context.Pool(min(workers, len(tasks)))
    try:
        yield from pool.imap_unordered(label_task, tasks, chunksize=1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()


@contextlib.contextmanager
def _single_threaded_environment():
    """Set the thread-count variables to 1 while worker processes start (they inherit the environment)."""
    saved = {name: os.environ.get(name) for name in _THREAD_VARIABLES}
    os.environ.update({name: "1" for name in _THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _progress_bar(total: int, initial: int, name: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"{name} labels", unit="frame", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True)


def format_summary(summary: Dict[str, Any]) -> str:
    """Human-readable lines of a :func:`label_frames` summary (what ``equiforce label`` prints)."""
    lines = [f"{summary['output']}: {summary['n_labelled']}/{summary['n_input']} frames labelled "
             f"({summary['labelled_now']} now), {summary['n_failed']} failed, {summary['n_remaining']} remaining; "
             f"{summary['seconds']:.1f} s with {summary['workers']} worker(s)"]
    if summary["labelled_now"] + summary["failed_now"]:
        rate = (summary["labelled_now"] + summary["failed_now"]) / summary["seconds"] * 60.0
        lines[0] += f" ({rate:.1f} frames/min)"
    for record in summary["failures"]:
        lines.append(f"  frame {record['index']} failed: {record['error']}")
    if summary["skipped_failed"]:
        lines.append(f"  {summary['skipped_failed']} frame(s) failed in an earlier run and were skipped (see "
                     f"{summary['failures_file']}; --retry-failed labels them again)")
    if summary["n_remaining"] == 0:
        lines.append("  output in input order" if summary["in_input_order"] else "")
    return "\n".join(line for line in lines if line)
