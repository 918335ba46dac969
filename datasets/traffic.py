r"""Traffic series on sensor graphs: loaders, windows, splits and scaling.

A series is a speed (Los-loop, METR-LA) or a count (bus boardings, vehicle volumes, bike trips);
what it measures travels with it (:attr:`TrafficSeries.quantity`, :attr:`TrafficSeries.unit`).
Three on-disk layouts are read into one :class:`TrafficSeries`:

* ``.npz``: the project's archive (``values`` [T, N] with ``quantity`` and ``unit``, or the older
  ``speed`` [T, N]; ``timestamps``, ``sensor_ids``, ``lat``, ``lon``, ``adj`` [N, N] or a distance
  edge list ``edge_src``/``edge_dst``/``edge_cost``);
* the DCRNN layout: an ``.h5`` written by ``pandas.DataFrame.to_hdf`` (a ``DatetimeIndex`` and
  one column per sensor id) plus ``adj_mx.pkl``, a pickle of
  ``[sensor_ids, sensor_id_to_ind, adj_mx]`` (Python-2 pickles need ``encoding='latin1'``);
* CSV: a series table (a timestamp column, then one column per sensor) plus either a dense
  adjacency table or a distance list ``from,to,cost``.

The conventions of the field (DCRNN, Graph WaveNet, BasicTS) are followed: windows are split
70/10/20 chronologically *by window count*, the z-score is fitted on the steps that training
inputs cover (never on validation or test steps), and entries equal to ``missing_value`` (0.0)
are missing. In count data 0 is often a real count: ``missing_value=None`` masks nothing.
Data sets are found by name (:func:`resolve_dataset`): the bundled ones, then
``../shared/datasets/traffic/<name>/<name>.npz`` beside the checkout.
"""
from __future__ import annotations

import io
import pickle
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from graphcore.codegen.errors import GraphError
from graphcore.datasets import DATA_DIR
from graphcore.datasets.text import undecodable_at

LOS_LOOP = DATA_DIR / "los_loop.npz"
"""Los-loop (T-GCN): the first week of METR-LA, 207 sensors at 5 minutes, bundled."""
SHARED_TRAFFIC = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "traffic"
"""Where the longer real series live beside a checkout (``<name>/<name>.npz``); absent in a clone."""


@dataclass(frozen=True)
class TrafficSeries:
    """A series on a sensor graph, validated on construction.

    Args:
        speed: ``[T, N]`` float32 readings; row = time step, column = sensor. Despite the name
            (kept for the readers of the first archives), any ``quantity``: a speed or a count.
        timestamps: ``[T]`` ``datetime64[s]``, evenly spaced.
        sensor_ids: ``[N]`` sensor ids as strings, in column order.
        adjacency: ``[N, N]`` non-negative weights; ``adjacency[i, j]`` weights edge i → j.
        lat: ``[N]`` latitudes in degrees, or ``None``.
        lon: ``[N]`` longitudes in degrees, or ``None``.
        missing_value: readings equal to it are missing (0.0 in METR-LA and PEMS-BAY), or
            ``None``: nothing is missing (count data where 0 is a real count).
        name: a label for messages and plots.
        quantity: what the readings measure (``speed``, ``volume``, ``passenger_inflow``, ...).
        unit: their unit, for tables and plots (``mph``, ``vehicles per 15 min``, ...).

    Raises:
        GraphError: NaN/inf readings, an adjacency whose size is not the number of sensors,
            negative or non-finite weights, or timestamps that are not evenly spaced.
    """

    speed: np.ndarray
    timestamps: np.ndarray
    sensor_ids: np.ndarray
    adjacency: np.ndarray
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    missing_value: float | None = 0.0
    name: str = "traffic"
    quantity: str = "speed"
    unit: str = "mph"

    def __post_init__(self) -> None:
        speed, adj = self.speed, self.adjacency
        if speed.ndim != 2:
            raise GraphError(f"{self.name}: speed must be [T, N], got shape {speed.shape}")
        steps, nodes = speed.shape
        bad = ~np.isfinite(speed)
        if bad.any():
            t, n = np.argwhere(bad)[0]
            raise GraphError(
                f"{self.name}: speed has {int(bad.sum())} NaN/inf entries (first at step {t}, "
                f"sensor {str(self.sensor_ids[n])!r}); replace them with the missing value "
                f"({self.missing_value}) so they are masked, or drop those steps")
        if len(self.sensor_ids) != nodes:
            raise GraphError(f"{self.name}: {len(self.sensor_ids)} sensor ids for {nodes} series columns")
        if adj.shape != (nodes, nodes):
            raise GraphError(
                f"{self.name}: adjacency is {adj.shape[0]}x{adj.shape[1] if adj.ndim > 1 else '?'} "
                f"but the series has {nodes} sensors; pass the graph built for these sensors "
                "(same ids, same order)")
        if not np.isfinite(adj).all() or (adj < 0).any():
            raise GraphError(f"{self.name}: adjacency weights must be finite and non-negative")
        if len(self.timestamps) != steps:
            raise GraphError(f"{self.name}: {len(self.timestamps)} timestamps for {steps} steps")
        gaps = np.diff(self.timestamps)
        if len(np.unique(gaps)) > 1 or (gaps <= np.timedelta64(0, "s")).any():
            raise GraphError(
                f"{self.name}: timestamps must increase by one fixed interval; found steps of "
                f"{sorted(set(gaps.astype('timedelta64[s]').astype(int).tolist()))[:5]} seconds. "
                "Resample the series to a regular grid first")
        for coord in ("lat", "lon"):
            value = getattr(self, coord)
            if value is not None and len(value) != nodes:
                raise GraphError(f"{self.name}: {len(value)} values of {coord} for {nodes} sensors")

    @property
    def num_steps(self) -> int:
        """T, the number of time steps."""
        return self.speed.shape[0]

    @property
    def num_nodes(self) -> int:
        """N, the number of sensors."""
        return self.speed.shape[1]

    @property
    def mask(self) -> np.ndarray:
        """``[T, N]`` bool, True where a reading is observed (everywhere when ``missing_value`` is None)."""
        if self.missing_value is None:
            return np.ones(self.speed.shape, dtype=bool)
        return self.speed != self.missing_value

    @property
    def is_count(self) -> bool:
        """Whether the readings are counts (anything but a speed), where 0 can be a real reading."""
        return self.quantity != "speed"

    @property
    def interval_minutes(self) -> float:
        """The sampling interval in minutes."""
        return float((self.timestamps[1] - self.timestamps[0]) / np.timedelta64(1, "m"))


def gaussian_kernel_adjacency(num_nodes: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray,
                              threshold: float = 0.1) -> np.ndarray:
    r"""Distance-kernel adjacency from a road-distance list (DCRNN's ``gen_adj_mx``).

    .. math::
        w_{ij} = \exp\!\left(-\left(\frac{d_{ij}}{\sigma}\right)^2\right),\qquad
        w_{ij} \leftarrow 0 \text{ if } w_{ij} < k

    where :math:`d_{ij}` is the distance from i to j (missing pairs are infinitely far),
    :math:`\sigma` the standard deviation of all finite distances (the diagonal included when the
    list has it) and :math:`k` the threshold. The result is directed, as road distance is.

    Args:
        num_nodes: N.
        src: ``[E]`` int source indices.
        dst: ``[E]`` int destination indices.
        cost: ``[E]`` distances.
        threshold: weights below it become 0 (DCRNN: 0.1).

    Returns:
        ``[N, N]`` float32 weights.

    Raises:
        GraphError: indices out of range, negative or non-finite distances, or fewer than two
            distinct distances (σ would be 0).
    """
    src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    cost = np.asarray(cost, dtype=np.float64)
    if not (len(src) == len(dst) == len(cost)):
        raise GraphError(f"distance list columns differ in length: {len(src)}, {len(dst)}, {len(cost)}")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes):
        raise GraphError(f"distance list names a node outside 0..{num_nodes - 1}")
    if not np.isfinite(cost).all() or (cost < 0).any():
        raise GraphError("distances must be finite and non-negative")
    dist = np.full((num_nodes, num_nodes), np.inf)
    dist[src, dst] = cost
    finite = dist[np.isfinite(dist)]
    sigma = finite.std() if finite.size else 0.0
    if sigma == 0.0:
        raise GraphError("cannot choose the kernel width: the distance list needs at least two "
                         "different finite distances")
    adj = np.exp(-np.square(dist / sigma))
    adj[adj < threshold] = 0.0
    return adj.astype(np.float32)


def time_of_day(timestamps: np.ndarray) -> np.ndarray:
    """``[T]`` float32 fraction of the day in [0, 1) (DCRNN's ``add_time_in_day``)."""
    day = timestamps.astype("datetime64[D]")
    return ((timestamps - day) / np.timedelta64(1, "D")).astype(np.float32)


def day_of_week(timestamps: np.ndarray) -> np.ndarray:
    """``[T]`` int64 day of week, Monday = 0."""
    return (timestamps.astype("datetime64[D]").astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday


@dataclass(frozen=True)
class WindowSplit:
    """Sliding windows over a series, split chronologically by window count.

    Window ``s`` reads steps ``[s, s + input_len)`` and predicts ``[s + input_len, s + input_len +
    horizon)``. Train windows come first, then validation, then test (DCRNN's
    ``generate_training_data``: ``n_test = round(0.2 W)``, ``n_train = round(0.7 W)``).
    """

    input_len: int
    horizon: int
    n_train: int
    n_val: int
    n_test: int

    def starts(self, stage: str) -> np.ndarray:
        """First step of each window of ``stage`` (``train``, ``val`` or ``test``)."""
        bounds = {"train": (0, self.n_train), "val": (self.n_train, self.n_train + self.n_val),
                  "test": (self.n_train + self.n_val, self.n_train + self.n_val + self.n_test)}
        if stage not in bounds:
            raise ValueError(f"unknown stage {stage!r}; expected one of {sorted(bounds)}")
        return np.arange(*bounds[stage])

    def target_steps(self, stage: str) -> np.ndarray:
        """``[W, horizon]`` step indices of the targets of each window of ``stage``."""
        return self.starts(stage)[:, None] + self.input_len + np.arange(self.horizon)

    @property
    def train_input_steps(self) -> int:
        """Steps ``[0, train_input_steps)`` are what training inputs read: the scaler's data."""
        return self.n_train + self.input_len - 1


def split_windows(num_steps: int, input_len: int, horizon: int,
                  fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> WindowSplit:
    """Count the windows of a series and split them 70/10/20 (or ``fractions``).

    Raises:
        GraphError: ``input_len + horizon`` longer than the series, a non-positive length, fractions
            that do not sum to 1, or a split left without windows.
    """
    if input_len < 1 or horizon < 1:
        raise GraphError(f"input_len and horizon must be positive, got {input_len} and {horizon}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise GraphError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    windows = num_steps - input_len - horizon + 1
    if windows < 1:
        raise GraphError(
            f"input_len ({input_len}) + horizon ({horizon}) = {input_len + horizon} steps, but the "
            f"series has only {num_steps}; shorten the windows or use a longer series")
    n_test = round(fractions[2] * windows)
    n_train = round(fractions[0] * windows)
    n_val = windows - n_train - n_test
    if min(n_train, n_val, n_test) < 1:
        raise GraphError(
            f"{windows} windows split {fractions} leave train/val/test = {n_train}/{n_val}/{n_test}; "
            "every part needs at least one window: use a longer series or shorter windows")
    return WindowSplit(input_len, horizon, n_train, n_val, n_test)


@dataclass(frozen=True)
class ZScore:
    """One global mean and standard deviation, fitted on observed training readings."""

    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray, mask: np.ndarray) -> "ZScore":
        """Fit on ``values[mask]`` (the caller passes the training steps only).

        Raises:
            GraphError: no observed value, or all observed values equal.
        """
        observed = values[mask]
        if observed.size == 0:
            raise GraphError("cannot fit the scaler: the training steps have no observed reading")
        std = float(observed.std())
        if std == 0.0:
            raise GraphError("cannot fit the scaler: every observed training reading is equal")
        return cls(float(observed.mean()), std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """``(values - mean) / std``."""
        return (values - self.mean) / self.std

    def inverse(self, values):
        """``values * std + mean``; works on arrays and tensors."""
        return values * self.std + self.mean


def resolve_dataset(name: str) -> Path:
    """The archive of a data set given by name or path.

    Tried in order: ``name`` as a path (a file, or a folder holding ``<folder name>.npz``); the
    bundled ``datasets/data/<name>.npz``; ``../shared/datasets/traffic/<name>/<name>.npz``
    (:data:`SHARED_TRAFFIC`).

    Raises:
        GraphError: nothing found; the message lists the places tried and the names available.
    """
    path = Path(name).expanduser()
    candidates = [path, path / f"{path.name}.npz", DATA_DIR / f"{name}.npz", SHARED_TRAFFIC / name / f"{name}.npz"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted({"los_loop", *(d.name for d in SHARED_TRAFFIC.glob("*") if (d / f"{d.name}.npz").is_file()
                                  and not d.name.endswith("_graph"))})
    raise GraphError(f"no traffic data set {name!r}: tried {', '.join(str(c) for c in candidates)}; "
                     f"known names: {', '.join(known)}")


def load_traffic(path: str | Path, adjacency_path: str | Path | None = None,
                 adjacency_key: str = "adj") -> TrafficSeries:
    """Read a series with its graph, choosing the reader by suffix.

    Args:
        path: ``.npz``, ``.h5``/``.hdf5`` (DCRNN layout) or ``.csv``.
        adjacency_path: ``adj_mx.pkl`` for ``.h5``; an ``N x N`` table or a ``from,to,cost``
            distance list for ``.csv``; unused for ``.npz``.
        adjacency_key: which matrix of an ``.npz`` to use (``adj``; ``adj_dcrnn`` in Los-loop).

    Raises:
        GraphError: a missing file, an unknown suffix, or a missing adjacency.
    """
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"no traffic data at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, adjacency_key)
    if suffix not in (".h5", ".hdf5", ".csv"):
        raise GraphError(f"{path}: unknown format {suffix!r}; expected .npz, .h5 (+ adj_mx.pkl) or .csv")
    if adjacency_path is None:
        raise GraphError(f"{path}: a {suffix} series needs its graph: pass adjacency_path "
                         "(adj_mx.pkl for .h5; an adjacency or distance CSV for .csv)")
    if suffix == ".csv":
        return load_csv(path, adjacency_path)
    return load_dcrnn(path, adjacency_path)


def load_npz(path: str | Path, adjacency_key: str = "adj") -> TrafficSeries:
    """Read the project's ``.npz`` archive (see ``shared/datasets/traffic/README.md``).

    The series is ``values`` (with ``quantity`` and ``unit``) or, in the first archives,
    ``speed`` (in mph). The adjacency is ``z[adjacency_key]``; an archive without it but with a
    distance list (``edge_src``, ``edge_dst``, ``edge_cost``) gets :func:`gaussian_kernel_adjacency`.
    """
    path = Path(path)
    with _open_npz(path) as z:
        key = "values" if "values" in z.files else "speed"
        if key not in z.files:
            raise GraphError(f"{path}: no 'values' or 'speed' array (a graph-only archive?); keys: {sorted(z.files)}")
        speed = z[key].astype(np.float32)
        quantity = str(z["quantity"]) if "quantity" in z.files else "speed"
        unit = str(z["unit"]) if "unit" in z.files else ("mph" if quantity == "speed" else "")
        ids = z["sensor_ids"].astype(str) if "sensor_ids" in z.files else np.arange(speed.shape[1]).astype(str)
        if adjacency_key in z.files:
            adj = z[adjacency_key].astype(np.float32)
        elif {"edge_src", "edge_dst", "edge_cost"} <= set(z.files):
            adj = gaussian_kernel_adjacency(speed.shape[1], z["edge_src"], z["edge_dst"], z["edge_cost"])
        else:
            raise GraphError(f"{path}: no {adjacency_key!r} matrix and no distance edge list; keys: {sorted(z.files)}")
        return TrafficSeries(
            speed=speed, timestamps=z["timestamps"].astype("datetime64[s]"), sensor_ids=ids,
            adjacency=adj, lat=z["lat"] if "lat" in z.files else None,
            lon=z["lon"] if "lon" in z.files else None,
            missing_value=float(z["missing_value"]) if "missing_value" in z.files else 0.0,
            name=path.stem, quantity=quantity, unit=unit)


class _CheckedNpz:
    """An open ``.npz`` whose member reads turn corrupt data into a :class:`GraphError` naming the file."""

    def __init__(self, path: Path, archive: np.lib.npyio.NpzFile):
        self.path, self.archive, self.files = path, archive, archive.files

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self.archive[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise GraphError(f"{self.path}: array {key!r} cannot be read ({_reason(err)}); the archive is "
                             "damaged or was not written by numpy.savez: write it again") from None

    def __enter__(self) -> "_CheckedNpz":
        return self

    def __exit__(self, *exc: object) -> None:
        self.archive.close()


def _reason(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _open_npz(path: Path) -> _CheckedNpz:
    """``np.load`` of an archive, with a clear error for an empty, truncated or non-zip file.

    numpy says "No data left in file" (EOFError) for an empty file and "contains pickled data"
    for any other non-zip bytes, neither naming the file nor the real problem.
    """
    size = path.stat().st_size
    if size == 0:
        raise GraphError(f"{path} is empty (0 bytes): expected an .npz archive written by numpy.savez")
    if not zipfile.is_zipfile(path):
        raise GraphError(f"{path} is not an .npz archive ({size} bytes that are not a zip file); write the series "
                         "with numpy.savez, or use a .csv/.h5 file with its suffix")
    try:
        return _CheckedNpz(path, np.load(path, allow_pickle=False))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise GraphError(f"{path}: cannot open the .npz archive ({_reason(err)})") from None


def read_text(path: str | Path) -> str:
    """A text file as UTF-8 (a byte-order mark removed), with a clear error for other encodings.

    Raises:
        GraphError: undecodable bytes; the message names the file, line and byte offset.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise GraphError(f"{undecodable_at(path, data, err)} is not valid UTF-8; save the file as UTF-8 "
                         "(e.g. iconv -f latin1 -t utf-8)") from None


_PANDAS_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv_table(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` of a UTF-8 file, with errors that name the file and line.

    Raises:
        GraphError: an empty file, a row with more fields than the header, or undecodable bytes.
    """
    text = read_text(path)
    if not text.strip():
        raise GraphError(f"{path} is empty: expected a CSV table with a header row")
    try:
        return pd.read_csv(io.StringIO(text), **kwargs)
    except pd.errors.EmptyDataError:
        raise GraphError(f"{path} has no columns to read: expected a CSV table with a header row") from None
    except pd.errors.ParserError as err:
        found = _PANDAS_FIELDS.search(str(err))
        if found:
            expected, line, saw = found.groups()
            raise GraphError(f"{path}, line {line}: {saw} fields where the header has {expected}; every row needs "
                             "the same columns as the header") from None
        raise GraphError(f"{path}: not a readable CSV table ({' '.join(str(err).split())})") from None


def read_dcrnn_pickle(path: str | Path) -> tuple[list[str], dict[str, int], np.ndarray]:
    """Read DCRNN's ``adj_mx.pkl``: ``[sensor_ids, sensor_id_to_ind, adj_mx]``.

    Pickles written by Python 2 fail to decode as ASCII; they are read again with
    ``encoding='latin1'``.
    """
    with open(path, "rb") as f:
        try:
            try:
                obj = pickle.load(f)
            except UnicodeDecodeError:
                f.seek(0)
                obj = pickle.load(f, encoding="latin1")
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                IndexError, KeyError) as err:
            raise GraphError(f"{path} is not a readable pickle of [sensor_ids, sensor_id_to_ind, adj_mx] "
                             f"({_reason(err)})") from None
    if not (isinstance(obj, (list, tuple)) and len(obj) == 3):
        raise GraphError(f"{path}: expected a pickle of [sensor_ids, sensor_id_to_ind, adj_mx]")
    ids, id_to_ind, adj = obj
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
    return ids, {str(k): int(v) for k, v in id_to_ind.items()}, np.asarray(adj, dtype=np.float32)


def load_dcrnn(h5_path: str | Path, adj_pkl_path: str | Path) -> TrafficSeries:
    """Read the DCRNN layout: ``metr-la.h5``/``pems-bay.h5`` and ``adj_mx.pkl``.

    Columns are reordered to the pickle's sensor order, so the adjacency rows line up.

    Raises:
        GraphError: the frame has no ``DatetimeIndex``, or the two files name different sensors.
    """
    try:
        frame = pd.read_hdf(h5_path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # PyTables' errors are RuntimeErrors
        raise GraphError(f"{h5_path} is not a readable pandas HDF5 file ({_reason(err)}); write the frame with "
                         "DataFrame.to_hdf") from None
    if not isinstance(frame, pd.DataFrame) or not isinstance(frame.index, pd.DatetimeIndex):
        raise GraphError(f"{h5_path}: expected a DataFrame with a DatetimeIndex (pandas to_hdf)")
    ids, _, adj = read_dcrnn_pickle(adj_pkl_path)
    frame.columns = [str(c) for c in frame.columns]
    missing = [i for i in ids if i not in frame.columns]
    if missing or len(ids) != frame.shape[1]:
        raise GraphError(
            f"{h5_path} has {frame.shape[1]} sensors, {adj_pkl_path} has {len(ids)}; "
            f"ids in the graph but not the series: {missing[:5]}")
    return TrafficSeries(
        speed=frame[ids].to_numpy(np.float32), timestamps=frame.index.to_numpy().astype("datetime64[s]"),
        sensor_ids=np.array(ids), adjacency=adj, name=Path(h5_path).stem)


def load_csv(series_path: str | Path, adjacency_path: str | Path) -> TrafficSeries:
    """Read a CSV series and a CSV graph.

    The series has a header of sensor ids; its first column holds timestamps. The graph is a
    distance list with columns ``from,to,cost`` (DCRNN's ``distances_la_2012.csv``, ids as in
    the series header, turned into weights by :func:`gaussian_kernel_adjacency`) or a headerless
    ``N x N`` table of weights (T-GCN's ``los_adj.csv``).
    """
    frame = read_csv_table(series_path, index_col=0)
    try:
        stamps = pd.DatetimeIndex(pd.to_datetime(frame.index))
    except (ValueError, TypeError) as err:
        raise GraphError(f"{series_path}: the first column must hold timestamps ({err})") from None
    ids = np.array([str(c) for c in frame.columns])
    head = read_csv_table(adjacency_path, nrows=0).columns
    if {"from", "to", "cost"} <= {str(c).strip() for c in head}:
        dist = read_csv_table(adjacency_path, dtype={"from": str, "to": str})
        index = {s: i for i, s in enumerate(ids)}
        keep = dist["from"].isin(index) & dist["to"].isin(index)
        adj = gaussian_kernel_adjacency(len(ids), dist["from"][keep].map(index).to_numpy(),
                                        dist["to"][keep].map(index).to_numpy(), dist["cost"][keep].to_numpy())
    else:
        adj = read_csv_table(adjacency_path, header=None).to_numpy(np.float32)
    try:
        speed = frame.to_numpy(np.float32)
    except ValueError as err:
        raise GraphError(f"{series_path}: every reading must be a number ({err}); write missing readings as 0") from None
    return TrafficSeries(speed=speed, timestamps=stamps.to_numpy().astype("datetime64[s]"),
                         sensor_ids=ids, adjacency=adj, name=Path(series_path).stem)
