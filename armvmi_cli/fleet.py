"""Run one view over many images on a Dask cluster: ``armvmi sweep``.

One Dask task per image (:func:`sweep_one`, run on a worker: open the image,
collect the view, return its ``--jsonl`` lines with ``image`` added); the
client appends each image's lines to one JSON Lines file as results arrive.
A failing image is an error row ``{"image", "error", "exit_code"}``; it never
stops the sweep.  Dask's ``distributed`` is an optional dependency
(``pip install 'armvmi[fleet]'``): a ``LocalCluster`` on this machine's cores
by default, or any running cluster (``scheduler="tcp://..."``) whose workers
can read the image paths (start those workers with ``--memory-limit 0``: the
image pages a worker's mmap touches count in its RSS).

Output and ``resume``: the file only ever grows by whole blocks of complete
lines, one block per image, written by this one process in order.  A killed
sweep can therefore only have cut the *last* block short, so ``resume``
drops the last image's rows (and any torn last line) and runs that image
again, then skips every image that has rows in the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .errors import ArmvmiError, ExitCode, UsageError

INSTALL_HINT = "armvmi sweep needs Dask's distributed: pip install 'armvmi[fleet]'"


def read_manifest(path) -> list[str]:
    """Image paths, one a line (blank lines and ``#`` comments skipped);
    relative paths are relative to the manifest's directory."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--manifest {p}: unreadable: {e}") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        q = Path(line)
        out.append(str(q if q.is_absolute() else p.parent / q))
    return out


def _dumps(row: dict) -> str:
    from .cli.render import _default

    # exactly what `armvmi VIEW IMAGE --jsonl` prints for a row (render.print_jsonl)
    return json.dumps(row, default=_default, separators=(",", ":"))


def sweep_one(view_name: str, image: str, options: dict) -> dict:
    """One image: the view's ``--jsonl`` rows, each with ``image`` first, as
    one block of text; or one error row.  Runs on a Dask worker, so it
    catches everything: a bad image must not kill the worker's task."""
    from .cli.views import collect_view, jsonl_rows
    from .session import Session
    from .views_registry import get_view

    opts = dict(options)
    vm = opts.pop("vm", None)
    try:
        view = get_view(view_name)
        with Session.open(image, **opts) as s:
            out = collect_view(s, view, vm)
            lines = [_dumps({"image": image, **row}) for row in jsonl_rows(out)]
            code = out.exit_code()
            partial = not out.complete
            findings = len(out.findings)
    except ArmvmiError as e:
        return _error(image, str(e), int(e.exit_code))
    except OSError as e:
        return _error(image, f"{e.strerror or e}: {e.filename or image}", int(ExitCode.BAD_INPUT))
    except Exception as e:  # a bug on one image: report it as that image's error
        return _error(image, f"internal error: {type(e).__name__}: {e}", int(ExitCode.INTERNAL))
    text = "".join(line + "\n" for line in lines)
    return {"image": image, "text": text, "rows": len(lines), "exit_code": code, "error": None,
            "partial": partial, "findings": findings}


def _error(image: str, message: str, code: int) -> dict:
    row = {"image": image, "error": message, "exit_code": code}
    return {"image": image, "text": _dumps(row) + "\n", "rows": 0, "exit_code": code, "error": message,
            "partial": False, "findings": 0}


# -- the output file --------------------------------------------------------------------------------

def resume_point(path) -> dict[str, str | None]:
    """Prepare ``path`` for resuming: drop a torn last line and the last
    image's rows (they may be cut short); return the images done before it,
    each with its error (None when it did not fail)."""
    p = Path(path)
    if not p.exists():
        return {}
    done: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    last_image, last_start, good_end, pos = None, 0, 0, 0
    with open(p, "rb") as f:
        for n, line in enumerate(f, 1):
            start, pos = pos, pos + len(line)
            if not line.endswith(b"\n"):
                break  # a torn last line: cut off below
            try:
                row = json.loads(line)
                image = row["image"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{p}:{n}: not a sweep row; --resume continues only a file armvmi sweep wrote") from None
            if "exit_code" in row and "error" in row and "vm" not in row:
                errors[image] = row["error"]
            if image != last_image:
                if last_image is not None:
                    done[last_image] = errors.get(last_image)
                last_image, last_start = image, start
            good_end = pos
    cut = last_start if last_image is not None else good_end
    if cut < p.stat().st_size:
        with open(p, "r+b") as f:
            f.truncate(cut)
    done.pop(last_image, None)
    return done


class _Appender:
    """Appends whole blocks (O_APPEND, one writer): the file never holds a
    partial block except when the process is killed mid-write."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, text: str) -> None:
        data = memoryview(text.encode())
        while data:
            n = os.write(self.fd, data)
            data = data[n:]

    def close(self) -> None:
        try:
            os.fsync(self.fd)
        finally:
            os.close(self.fd)


# -- the sweep --------------------------------------------------------------------------------------

@dataclass
class SweepSummary:
    images: int = 0  # asked for
    skipped: int = 0  # already in the output (--resume)
    done: int = 0
    rows: int = 0
    failed: list = field(default_factory=list)  # (image, error)
    findings: int = 0  # images whose view reported findings
    partial: int = 0  # images whose view was partial

    def exit_code(self) -> int:
        if self.failed:
            return int(ExitCode.PARTIAL)
        if self.findings:
            return int(ExitCode.FINDINGS)
        return int(ExitCode.PARTIAL if self.partial else ExitCode.OK)


def _client(scheduler: str | None, workers: int | None, processes: bool):
    import logging

    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError, ValueError) as e:
            raise UsageError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {e}") from None
    # memory_limit=0: a worker's RSS counts the image pages its mmap touched
    # (page cache, not heap); Dask's memory monitor would pause or restart
    # workers for it on large images.
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=processes,
                           dashboard_address=None, silence_logs=logging.ERROR, memory_limit=0)
    return Client(cluster), cluster


def sweep(view_name: str, images: Iterable[str], out, options: dict | None = None, scheduler: str | None = None,
          resume: bool = False, workers: int | None = None, processes: bool = True,
          progress: Callable[[SweepSummary], None] | None = None) -> SweepSummary:
    """Run ``view_name`` over ``images`` and write ``out`` (JSON Lines)."""
    from .views_registry import get_view

    get_view(view_name)  # an unknown view is a usage error before any cluster starts
    try:
        import distributed
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    images = list(dict.fromkeys(str(i) for i in images))  # once each, in order
    if not images:
        raise UsageError("no images to sweep (give IMAGE... or --manifest)")
    out = Path(out)
    for img in images:
        if os.path.exists(img) and out.exists() and os.path.samefile(img, out):
            raise UsageError(f"-o {out} is one of the images")
    if resume:
        done = resume_point(out)
    else:
        if out.exists() and out.stat().st_size:
            raise UsageError(f"-o {out} exists; give --resume to continue it, or remove it")
        done = {}
    summary = SweepSummary(images=len(images))
    todo = [i for i in images if i not in done]
    summary.skipped = len(images) - len(todo)
    # The table is the answer: images that failed in the earlier run still count.
    summary.failed += [(i, f"(earlier run) {done[i]}") for i in images if done.get(i) is not None]
    client = cluster = None
    if todo:
        client, cluster = _client(scheduler, workers, processes)  # before OUT: a bad address leaves no file
    writer = _Appender(out)
    if progress:
        progress(summary)
    try:
        if todo:
            futures = {client.submit(sweep_one, view_name, img, dict(options or {}), pure=False,
                                     key=f"armvmi-sweep-{view_name}-{n}-{os.getpid()}"): img
                       for n, img in enumerate(todo)}
            for fut in distributed.as_completed(futures):
                img = futures[fut]
                try:
                    res = fut.result()
                except Exception as e:  # the worker died (killed, out of memory): that image failed
                    res = _error(img, f"worker failed: {type(e).__name__}: {e}", int(ExitCode.INTERNAL))
                writer.write(res["text"])
                summary.done += 1
                summary.rows += res["rows"]
                if res["error"] is not None:
                    summary.failed.append((img, res["error"]))
                else:
                    summary.findings += res["exit_code"] == ExitCode.FINDINGS
                    summary.partial += bool(res["partial"])
                if progress:
                    progress(summary)
    finally:
        writer.close()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return summary
