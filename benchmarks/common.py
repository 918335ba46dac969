"""Helpers every benchmark shares: machine and versions, timing, memory, isolation, output.

* :func:`machine_info`, :func:`versions`, :func:`environment`, :func:`print_environment`:
  what a result was measured on.
* :func:`median_time`: median (and every run) of a callable, with an optional time budget.
* :func:`peak_rss_during`: extra resident memory a callable needs, in this process.
* :func:`run_isolated` / :func:`peak_memory`: run a callable in a fresh subprocess with a
  time limit and a memory cap; a cell that runs too long or runs out of memory comes back
  as ``TIMEOUT`` / ``OOM`` instead of hanging or killing the benchmark.
* :func:`add_common_arguments`, :func:`format_table` / :func:`print_table`,
  :func:`write_json`: the shared options, the printed table and the JSON record (under
  ``results/``, which git ignores).

Run benchmarks from the repository root as modules: ``python -m benchmarks.<name> --help``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
MB = 2**20


# ---------------------------------------------------------------------- where and with what
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Platform, CPU model, core counts, torch threads and the load when measured."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0))}
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    if hasattr(os, "getloadavg"):
        info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return info


def versions(*packages: str) -> dict[str, str]:
    """Installed version of each distribution (``"not installed"`` where it is missing)."""
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def environment(*packages: str) -> dict[str, dict]:
    """``{"machine": machine_info(), "versions": versions(*packages)}``, for a result's JSON."""
    return {"machine": machine_info(), "versions": versions(*packages)}


# ---------------------------------------------------------------------- time
class TimeBudgetExceeded(RuntimeError):
    """The remaining runs of :func:`median_time` would overrun its budget.

    Attributes:
        seconds_per_run: the slowest single run measured before giving up (a lower bound).
    """

    def __init__(self, seconds_per_run: float, budget_s: float):
        super().__init__(f"one run takes {seconds_per_run:.2f} s; the remaining runs would exceed the "
                         f"{budget_s:.0f} s budget")
        self.seconds_per_run = seconds_per_run


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of the timed runs (warm-up runs excluded)."""

    median: float
    runs: tuple[float, ...]


def median_time(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, budget_s: float | None = None) -> Timing:
    """Median wall-clock time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones.

    Args:
        budget_s: if set, raise :class:`TimeBudgetExceeded` as soon as the runs still to do,
            at the slowest pace seen so far, would not fit in it (so a pathological case costs
            about one run, not ``repeats + warmup``).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"median_time: need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    start, slowest, runs = time.perf_counter(), 0.0, []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t0
        slowest = max(slowest, elapsed)
        if i >= warmup:
            runs.append(elapsed)
        left = warmup + repeats - i - 1
        if budget_s is not None and left and time.perf_counter() - start + left * slowest > budget_s:
            raise TimeBudgetExceeded(slowest, budget_s)
    return Timing(statistics.median(runs), tuple(runs))


# ---------------------------------------------------------------------- memory
def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_during(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return ``(result, bytes)``: its peak resident memory above the start.

    PyTorch keeps no CPU allocator statistics, so this reads the process's resident set:
    the high-water mark (``VmHWM``) is reset to the current size first, and the result is
    the new high-water mark minus the resident size at the start. Where the reset is not
    allowed it falls back to the growth of ``ru_maxrss``, a lower bound. Call it on a fresh
    process's *first* run: memory that the allocator keeps from an earlier run is not counted.
    """
    exact = _reset_peak_rss()
    before = _status_kb("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fn()
    after = _status_kb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result, max(0, (after or 0) - (before or 0)) * 1024


# ---------------------------------------------------------------------- isolation
OK, TIMEOUT, OOM, ERROR = "ok", "TIMEOUT", "OOM", "ERROR"
_OOM_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory", "std::bad_alloc")


@dataclass(frozen=True)
class Isolated:
    """Outcome of :func:`run_isolated`: ``status`` is ``ok``, ``TIMEOUT``, ``OOM`` or ``ERROR``."""

    status: str
    value: Any = None
    message: str = ""
    details: dict = field(default_factory=dict)


def _cap_address_space(extra_bytes: int) -> None:
    size_kb = _status_kb("VmSize")
    if size_kb is not None:
        limit = size_kb * 1024 + extra_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _child(conn, fn: Callable, args: tuple, memory_limit_bytes: int | None) -> None:
    try:
        if memory_limit_bytes is not None:
            _cap_address_space(memory_limit_bytes)
        conn.send(Isolated(OK, fn(*args)))
    except TimeBudgetExceeded as exc:
        conn.send(Isolated(TIMEOUT, message=str(exc), details={"seconds_per_run": exc.seconds_per_run}))
    except MemoryError as exc:
        conn.send(Isolated(OOM, message=f"MemoryError: {exc}"))
    except Exception as exc:  # noqa: BLE001 (reported to the parent, which decides)
        text = f"{type(exc).__name__}: {exc}"
        status = OOM if any(m in text for m in _OOM_MESSAGES) else ERROR
        conn.send(Isolated(status, message=text if status == OOM else traceback.format_exc(limit=4)))
    finally:
        conn.close()


def run_isolated(fn: Callable, *args: Any, timeout_s: float, memory_limit_bytes: int | None = None) -> Isolated:
    """Call ``fn(*args)`` in a fresh (spawned) Python process and return its outcome.

    Args:
        fn: a module-level (picklable) function; its return value must pickle too.
        timeout_s: wall-clock limit; the process is killed after it (``TIMEOUT``).
        memory_limit_bytes: if set, the child's address space may grow by at most this much
            after start-up; a failed allocation is reported as ``OOM``.

    Returns:
        :class:`Isolated` with the value (``ok``) or the reason. A child that dies without an
        answer (killed by the system's OOM killer, a crash) is ``OOM`` for SIGKILL, else ``ERROR``.
    """
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args, memory_limit_bytes), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(timeout_s):
            try:
                return parent.recv()
            except EOFError:
                pass  # died before answering; see the exit code below
        else:
            proc.kill()
            return Isolated(TIMEOUT, message=f"killed after {timeout_s:.0f} s")
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
    code = proc.exitcode
    if code == -9:
        return Isolated(OOM, message="killed by SIGKILL (the system's OOM killer?)")
    return Isolated(ERROR, message=f"the worker exited with code {code} without an answer")


def _peak_child(fn: Callable, args: tuple) -> tuple[Any, int]:
    return peak_rss_during(lambda: fn(*args))


def peak_memory(fn: Callable, *args: Any, timeout_s: float = 600.0) -> int:
    """Peak extra resident bytes of ``fn(*args)`` run once in a fresh subprocess.

    Includes whatever ``fn`` builds itself; to measure one step only, call
    :func:`peak_rss_during` inside your own isolated function after the set-up.

    Raises:
        RuntimeError: the subprocess timed out, ran out of memory or failed.
    """
    out = run_isolated(_peak_child, fn, args, timeout_s=timeout_s)
    if out.status != OK:
        raise RuntimeError(f"peak_memory of {getattr(fn, '__name__', fn)}: {out.status}: {out.message}")
    return out.value[1]


# ---------------------------------------------------------------------- output
def add_common_arguments(parser: argparse.ArgumentParser, output: str) -> None:
    """The options every benchmark has: ``--threads``, ``--output`` (JSON), ``--markdown``."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared: keep it low)")
    parser.add_argument("--output", default=output, help="JSON file written (bare names go to results/)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:,.2f}"
    return "" if value is None else str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | Mapping[str, str],
                 markdown: bool = False) -> str:
    """Rows of dicts as an aligned text table (or a Markdown pipe table).

    Args:
        rows: one mapping per row; missing keys print empty.
        columns: keys to show, or ``{key: header}``.
        markdown: a GitHub pipe table instead of space-aligned text.

    Floats print with two decimals (three significant digits below 0.01); numbers align right.
    """
    headers = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    keys = list(headers)
    cells = [[_cell(row.get(k)) for k in keys] for row in rows]
    numeric = [all(isinstance(row.get(k), (int, float)) or row.get(k) is None for row in rows) for k in keys]
    widths = [max([len(headers[k])] + [len(r[i]) for r in cells]) for i, k in enumerate(keys)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "| " + " | ".join(parts) + " |" if markdown else "  ".join(parts).rstrip()

    rule = ("|" + "|".join(("-" * (w + 1) + ":" if num else "-" * (w + 2)) for w, num in zip(widths, numeric)) + "|"
            if markdown else "  ".join("-" * w for w in widths))
    return "\n".join([line([headers[k] for k in keys]), rule] + [line(r) for r in cells])


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | Mapping[str, str],
                title: str | None = None, markdown: bool = False) -> None:
    """Print :func:`format_table` (with an optional title line)."""
    if title:
        print(f"\n{title}")
    print(format_table(rows, columns, markdown=markdown), flush=True)


def print_environment(env: Mapping[str, Mapping[str, Any]]) -> None:
    """Print an :func:`environment` record as a two-column table."""
    print_table([{"key": k, "value": v} for part in env.values() for k, v in part.items()], ["key", "value"])


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON; a bare file name goes under ``results/``.

    Returns the path written (parents are created).
    """
    path = Path(path)
    if path.parent == Path("."):
        path = RESULTS_DIR / path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
