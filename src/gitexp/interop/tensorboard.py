"""TensorBoard event files in and out: ``git exp import tensorboard LOGDIR`` and
``git exp export --tensorboard DIR``, through the ``tensorboard`` package's own
reader and writer (the ``tensorboard`` extra; TensorFlow is not needed).

Import: every directory under LOGDIR that holds ``*tfevents*`` files is one run
(TensorBoard's own notion of a run), named by its path under LOGDIR. Its scalars
(``add_scalar`` of tensorboardX, ``torch.utils.tensorboard``, Keras, Lightning;
TF1 ``simple_value`` and TF2 tensor scalars alike) become metrics with their
steps and wall times; hparams (the HParams plugin's session start) become
params. Images, histograms, text and graphs are not imported (counted in the
report). A run's identity is its event files' names (they hold their creation
time, host and pid), so importing a parent or a child directory again adds nothing.

Export: each run becomes ``DIR/<experiment>/<run-id>/``, one event file with
every metric point as a float64 tensor scalar (no float32 rounding) at its step
and time, and the run's params as an HParams session, written into a
temporary directory and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitexp import records as fmt
from gitexp.cas import replace_tree
from gitexp.errors import ForeignStoreError, GitExpError, MissingExtra, UsageError
from gitexp.interop.imported import ImportedRun, Importer, ImportReport, Point, first_line
from gitexp.records import ExpRef
from gitexp.store import ExpStore, RunRecord

if TYPE_CHECKING:
    from gitexp.leaderboard import Query

EVENTS = "tfevents"
SCALARS_PLUGIN = "scalars"
HPARAMS_PLUGIN = "hparams"


def _require() -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(
            "reading and writing TensorBoard files", "tensorboard", "tensorboard"
        ) from exc


def event_dirs(logdir: str) -> dict[str, list[str]]:
    """Directory (relative to ``logdir``, ``.`` for itself) -> its event files, sorted."""
    out: dict[str, list[str]] = {}
    for dirpath, dirnames, files in os.walk(logdir):
        dirnames.sort()
        events = sorted(
            f for f in files if EVENTS in f and os.path.isfile(os.path.join(dirpath, f))
        )
        if events:
            rel = os.path.relpath(dirpath, logdir).replace(os.sep, "/")
            out[rel] = events
    return out


@dataclass
class _Read:
    points: list[Point]
    hparams: dict[str, Any]
    first: float | None
    last: float | None
    ignored: int


def _read_run(paths: Sequence[str]) -> _Read:
    """Scalars and hparams of one run's event files."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    points: list[Point] = []
    hparams: dict[str, Any] = {}
    first: float | None = None
    last: float | None = None
    ignored = 0
    for path in paths:
        plugin_of: dict[str, str] = {}  # a tag's metadata comes with its first value only
        for event in EventFileLoader(path).Load():
            wall = float(event.wall_time)
            if not event.HasField("summary"):
                if event.WhichOneof("what") not in (None, "file_version"):
                    ignored += 1  # a graph, a session log, run metadata
                continue
            first = wall if first is None else min(first, wall)
            last = wall if last is None else max(last, wall)
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin:
                    plugin_of[value.tag] = plugin
                plugin = plugin_of.get(value.tag, plugin)
                if plugin == HPARAMS_PLUGIN:
                    data = plugin_data_pb2.HParamsPluginData.FromString(
                        value.metadata.plugin_data.content
                    )
                    if data.HasField("session_start_info"):
                        for key, v in data.session_start_info.hparams.items():
                            kind = v.WhichOneof("kind")
                            hparams[key] = None if kind == "null_value" else getattr(v, kind)
                elif plugin == SCALARS_PLUGIN and value.WhichOneof("value") == "tensor":
                    array = tensor_util.make_ndarray(value.tensor)
                    if array.size == 1:
                        points.append(Point(value.tag, int(event.step), float(array.item()), wall))
                    else:
                        ignored += 1
                else:
                    ignored += 1
    return _Read(points, hparams, first, last, ignored)


def import_tensorboard(
    store: ExpStore,
    logdir: str,
    experiment: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import the runs of a TensorBoard log directory.

    ``experiment`` defaults to the log directory's name (``runs``,
    ``lightning_logs``); a name that is no valid experiment is an error.

    Raises:
        MissingExtra: the tensorboard package is not installed.
        ForeignStoreError: ``logdir`` is not a directory, or holds no event file.
    """
    _require()
    if not os.path.isdir(logdir):
        raise ForeignStoreError(f"{logdir}: no such directory")
    root = os.path.abspath(logdir)
    dest = experiment or os.path.basename(root.rstrip(os.sep))
    try:
        fmt.validate_experiment(dest)
    except GitExpError as exc:
        raise type(exc)(f"{exc} (the log directory's name; name the experiment instead)") from exc
    runs = event_dirs(root)
    if not runs:
        raise ForeignStoreError(f"{logdir}: no TensorBoard event files (*tfevents*) in it")
    importer = Importer(store)
    report = ImportReport()
    ignored = 0
    for rel, files in runs.items():
        name = os.path.basename(root) if rel == "." else rel
        identity = "tensorboard:" + ",".join(
            f"{f}:{_first_record_hash(os.path.join(root, rel, f))}" for f in files
        )
        try:
            read = _read_run([os.path.join(root, rel, f) for f in files])
        except Exception as exc:
            report.skipped.append(f"{name}: cannot read its event files ({first_line(exc)})")
            continue
        ignored += read.ignored
        if read.first is None:
            report.skipped.append(f"{name}: no events")
            continue
        if importer.existing(identity, read.first) is not None:
            report.already.append(name)
            continue
        run = ImportedRun(
            identity=identity,
            experiment=dest,
            start=read.first,
            end=read.last,
            origin={"tool": "tensorboard", "logdir": root, "run": rel, "files": files},
            name=name,
            params=read.hparams,
            points=read.points,
        )
        try:
            ref = importer.write(run)
        except UsageError as exc:
            report.skipped.append(f"{name}: {exc}")
            continue
        if ref is None:
            report.already.append(name)
        else:
            report.imported.append(ref.short)
            if progress is not None:
                progress(f"{name} -> {ref.short}")
    if ignored:
        report.warnings.append(
            f"{ignored} event(s) that are not scalars or hparams (images, histograms, text, "
            "graphs) were not imported"
        )
    return report


def _first_record_hash(path: str) -> str:
    """16 hex digits of the SHA-256 of an event file's first record (its
    ``file_version`` event, with the time the writer opened it): with the file's
    name, what tells two writers' files apart wherever the directory is."""
    import hashlib
    import struct

    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12:
            return hashlib.sha256(header).hexdigest()[:16]
        (length,) = struct.unpack("<Q", header[:8])
        body = f.read(min(length, 1 << 16) + 4)
    return hashlib.sha256(header + body).hexdigest()[:16]


# ------------------------------------------------------------------ export


@dataclass
class TensorBoardExport:
    """What an export wrote."""

    directory: str
    runs: int
    points: int


def _hparam(value: Any) -> Any:
    """A param as an HParams value: numbers, booleans and text as they are,
    anything else (lists, null) as JSON text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _events(store: ExpStore, rec: RunRecord) -> tuple[list[Any], int]:
    """The events of one run: its hparams session, then every metric point."""
    import numpy as np
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2
    from tensorboard.plugins.scalar import metadata as scalar_metadata
    from tensorboard.util import tensor_util

    from gitexp.metrics import key_arrays

    start = fmt.parse_iso(rec.info.get("start_time"))
    start_secs = start.timestamp() if start else 0.0
    events = []
    params = {k: _hparam(v) for k, v in fmt.flatten(rec.params).items()}
    if params:
        session = summary_v2.hparams_pb(params, trial_id=rec.ref.short, start_time_secs=start_secs)
        events.append(event_pb2.Event(wall_time=start_secs, step=0, summary=session))
    table = store.read_metrics(rec)
    arrays = key_arrays(table)
    points = []
    for key, (steps, values, times) in arrays.items():
        meta = scalar_metadata.create_summary_metadata(display_name=key, description="")
        for i in range(len(steps)):
            points.append((int(times[i]), int(steps[i]), key, float(values[i]), meta))
            meta = None  # the metadata goes with a tag's first value only
    points.sort(key=lambda p: (p[0], p[1]))
    for micros, step, key, value, meta in points:
        tensor = tensor_util.make_tensor_proto(np.float64(value))
        summary_value = summary_pb2.Summary.Value(tag=key, tensor=tensor)
        if meta is not None:
            summary_value.metadata.CopyFrom(meta)
        events.append(
            event_pb2.Event(
                wall_time=micros / 1e6,
                step=step,
                summary=summary_pb2.Summary(value=[summary_value]),
            )
        )
    return events, len(points)


def export_tensorboard(
    store: ExpStore, records: Iterable[RunRecord], directory: str
) -> TensorBoardExport:
    """Write ``records`` as TensorBoard runs under ``directory``
    (``<experiment>/<run-id>/``); a run exported before is replaced whole."""
    _require()
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    os.makedirs(directory, exist_ok=True)
    runs = points = 0
    for rec in records:
        target = os.path.join(directory, *rec.experiment.split("/"), rec.run_id)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        events, n = _events(store, rec)
        tmp = tempfile.mkdtemp(prefix=".gitexp-tb-", dir=parent)
        try:
            writer = EventFileWriter(tmp, filename_suffix=f".gitexp-{rec.run_id}")
            for event in events:
                writer.add_event(event)
            writer.close()
            replace_tree(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        runs += 1
        points += n
    return TensorBoardExport(directory, runs, points)


def export_selected_tensorboard(
    store: ExpStore, query: Query, directory: str, problems: list[str] | None = None
) -> TensorBoardExport:
    """:func:`export_tensorboard` of the runs the leaderboard selects for ``query``."""
    from gitexp.leaderboard import select

    _require()
    table = select(store, query, problems)
    refs = table.table.column("ref").to_pylist()
    shas = table.table.column("sha").to_pylist()
    records = (store.read(ExpRef.from_ref(ref), sha) for ref, sha in zip(refs, shas))
    return export_tensorboard(store, records, directory)
