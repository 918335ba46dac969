"""Loaders, windows, splits and scaling of ``datasets.traffic``."""
import pickle
import struct

import numpy as np
import pandas as pd
import pytest

from graphcore.codegen.errors import GraphError
from graphcore.datasets.traffic import (LOS_LOOP, TrafficSeries, ZScore, day_of_week, gaussian_kernel_adjacency,
                              load_traffic, read_dcrnn_pickle, split_windows, time_of_day)

IDS = ["773869", "767541", "767542", "717447"]


def small_frame(steps: int = 48) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    index = pd.date_range("2012-03-01", periods=steps, freq="5min")
    values = rng.uniform(20, 70, size=(steps, len(IDS))).astype(np.float32)
    values[3, 1] = 0.0  # a missing reading
    return pd.DataFrame(values, index=index, columns=IDS)


class Py2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as DCRNN's adj_mx.pkl (written by Python 2) has."""

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[bytes] = save_bytes


def write_dcrnn(tmp_path, frame, adj, ids=IDS, python2=True):
    h5, pkl = tmp_path / "metr-la.h5", tmp_path / "adj_mx.pkl"
    frame.to_hdf(h5, key="df")
    if python2:
        raw_ids = [i.encode() for i in ids]
        with open(pkl, "wb") as f:
            Py2Pickler(f, protocol=2).dump([raw_ids, {k: i for i, k in enumerate(raw_ids)}, adj])
    else:
        with open(pkl, "wb") as f:
            pickle.dump([list(ids), {k: i for i, k in enumerate(ids)}, adj], f)
    return h5, pkl


@pytest.mark.parametrize("python2", [True, False])
def test_dcrnn_h5_and_pickle_round_trip(tmp_path, python2):
    frame = small_frame()
    adj = np.eye(4, dtype=np.float32) + np.diag([0.5, 0.25, 0.75], k=1).astype(np.float32)
    # columns stored in another order than the pickle: the loader must reorder them
    h5, pkl = write_dcrnn(tmp_path, frame[IDS[::-1]], adj, python2=python2)
    if python2:
        with pytest.raises(UnicodeDecodeError):
            with open(pkl, "rb") as f:
                pickle.load(f)
    ids, id_to_ind, adj_read = read_dcrnn_pickle(pkl)
    assert ids == IDS and id_to_ind == {k: i for i, k in enumerate(IDS)}
    series = load_traffic(h5, pkl)
    np.testing.assert_array_equal(series.adjacency, adj)
    np.testing.assert_array_equal(series.speed, frame.to_numpy())
    assert list(series.sensor_ids) == IDS
    assert series.timestamps[1] - series.timestamps[0] == np.timedelta64(300, "s")
    assert series.mask.sum() == series.speed.size - 1


def test_dcrnn_sensor_mismatch_is_reported(tmp_path):
    frame = small_frame()
    h5, pkl = write_dcrnn(tmp_path, frame, np.eye(3, dtype=np.float32), ids=IDS[:2] + ["999999"])
    with pytest.raises(GraphError, match="999999"):
        load_traffic(h5, pkl)


def test_csv_with_distance_list_and_with_matrix(tmp_path):
    frame = small_frame()
    frame.index.name = "timestamp"
    frame.to_csv(tmp_path / "speed.csv")
    pd.DataFrame({"from": [IDS[0], IDS[1], IDS[2], "404"], "to": [IDS[1], IDS[2], IDS[3], IDS[0]],
                  "cost": [100.0, 300.0, 2000.0, 5.0]}).to_csv(tmp_path / "dist.csv", index=False)
    series = load_traffic(tmp_path / "speed.csv", tmp_path / "dist.csv")
    expected = gaussian_kernel_adjacency(4, np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([100.0, 300.0, 2000.0]))
    np.testing.assert_allclose(series.adjacency, expected)
    np.testing.assert_allclose(series.speed, frame.to_numpy(), rtol=1e-6)
    matrix = np.arange(16, dtype=np.float32).reshape(4, 4)
    pd.DataFrame(matrix).to_csv(tmp_path / "adj.csv", header=False, index=False)
    np.testing.assert_array_equal(load_traffic(tmp_path / "speed.csv", tmp_path / "adj.csv").adjacency, matrix)


def test_gaussian_kernel_matches_dcrnn_formula():
    src, dst, cost = np.array([0, 0, 1, 2, 0]), np.array([1, 2, 2, 0, 0]), np.array([1.0, 2.0, 3.0, 10.0, 0.0])
    adj = gaussian_kernel_adjacency(3, src, dst, cost, threshold=0.1)
    sigma = cost.std()
    assert adj[0, 1] == pytest.approx(np.exp(-(1.0 / sigma) ** 2))
    assert adj[1, 2] == pytest.approx(np.exp(-(3.0 / sigma) ** 2))
    assert adj[0, 0] == 1.0
    assert adj[2, 0] == 0.0          # exp(-(10/σ)²) ≈ 0.006 < 0.1: cut
    assert adj[1, 0] == 0.0          # no distance given: infinitely far
    with pytest.raises(GraphError, match="outside"):
        gaussian_kernel_adjacency(2, src, dst, cost)


def test_npz_bundled_los_loop():
    series = load_traffic(LOS_LOOP)
    assert (series.num_steps, series.num_nodes) == (2016, 207)
    assert series.interval_minutes == 5.0
    assert np.allclose(series.adjacency, series.adjacency.T)
    assert series.lat is not None and series.lat.shape == (207,)


STAMPS = np.datetime64("2012-03-01T00:00:00") + np.arange(10) * np.timedelta64(300, "s")


def make_series(**changes) -> TrafficSeries:
    speed = np.full((10, 3), 50.0, dtype=np.float32)
    args = dict(speed=speed, timestamps=STAMPS,
                sensor_ids=np.array(["a", "b", "c"]), adjacency=np.eye(3, dtype=np.float32))
    args.update(changes)
    return TrafficSeries(**args)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_series_is_an_error(bad):
    speed = np.full((10, 3), 50.0, dtype=np.float32)
    speed[4, 2] = bad
    with pytest.raises(GraphError, match="NaN/inf entries.*step 4, sensor 'c'"):
        make_series(speed=speed)


def test_adjacency_size_mismatch_is_an_error():
    with pytest.raises(GraphError, match="adjacency is 4x4 but the series has 3 sensors"):
        make_series(adjacency=np.eye(4, dtype=np.float32))


def test_irregular_timestamps_are_an_error():
    stamps = STAMPS.copy()
    stamps[5:] += np.timedelta64(60, "s")
    with pytest.raises(GraphError, match="fixed interval"):
        make_series(timestamps=stamps)


def test_windows_longer_than_series_is_an_error():
    with pytest.raises(GraphError, match=r"input_len \(12\) \+ horizon \(24\) = 36 steps.*only 30"):
        split_windows(30, 12, 24)
    with pytest.raises(GraphError, match="at least one window"):
        split_windows(38, 12, 24)


def test_split_is_chronological_70_10_20_like_dcrnn():
    split = split_windows(2016, 12, 24)
    assert (split.n_train, split.n_val, split.n_test) == (1387, 198, 396)  # the README's counts
    train, val, test = (split.starts(s) for s in ("train", "val", "test"))
    assert train[-1] + 1 == val[0] and val[-1] + 1 == test[0] and test[-1] + 36 == 2016
    # no training target reaches a test step, and the scaler's steps stop before validation inputs end
    assert split.target_steps("train").max() < test[0]
    assert split.train_input_steps == train[-1] + 12
    with pytest.raises(ValueError, match="unknown stage"):
        split.starts("holdout")


def test_zscore_uses_observed_values_only():
    values = np.array([[0.0, 10.0], [20.0, 30.0]])
    scaler = ZScore.fit(values, values != 0)
    assert scaler.mean == pytest.approx(20.0) and scaler.std == pytest.approx(np.std([10, 20, 30]))
    np.testing.assert_allclose(scaler.inverse(scaler.transform(values)), values)
    with pytest.raises(GraphError, match="no observed reading"):
        ZScore.fit(values, np.zeros_like(values, dtype=bool))


def test_time_covariates():
    stamps = np.array(["2012-03-01T00:00", "2012-03-01T12:00", "2012-03-05T18:00"], dtype="datetime64[s]")
    np.testing.assert_allclose(time_of_day(stamps), [0.0, 0.5, 0.75])
    np.testing.assert_array_equal(day_of_week(stamps), [3, 3, 0])  # Thursday, Thursday, Monday


def test_load_traffic_rejects_unknown_files(tmp_path):
    with pytest.raises(GraphError, match="no traffic data"):
        load_traffic(tmp_path / "missing.npz")
    (tmp_path / "x.parquet").write_bytes(b"")
    with pytest.raises(GraphError, match="unknown format"):
        load_traffic(tmp_path / "x.parquet")
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(GraphError, match="needs its graph"):
        load_traffic(tmp_path / "x.h5")


def test_empty_truncated_or_foreign_npz_names_the_file(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(GraphError, match=r"empty.npz is empty \(0 bytes\)"):
        load_traffic(tmp_path / "empty.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(GraphError, match=r"junk.npz is not an .npz archive \(14 bytes"):
        load_traffic(tmp_path / "junk.npz")
    np.savez(tmp_path / "whole.npz", speed=np.ones((4, 2)))
    data = bytearray((tmp_path / "whole.npz").read_bytes())
    data[60:70] = b"\xff" * 10                                  # corrupt the member's bytes, keep the zip index
    (tmp_path / "damaged.npz").write_bytes(bytes(data))
    with pytest.raises(GraphError, match=r"damaged.npz: (array 'speed' cannot be read|cannot open)"):
        load_traffic(tmp_path / "damaged.npz")


def test_csv_errors_name_file_and_line(tmp_path):
    (tmp_path / "adj.csv").write_text("1,0\n0,1\n")
    cases = {"ragged.csv": (b"t,a,b\n2012-03-01 00:00,1,2\n2012-03-01 00:05,1,2,3\n",
                            r"ragged.csv, line 3: 4 fields where the header has 3"),
             "empty.csv": (b"\n\n", r"empty.csv is empty: expected a CSV table with a header row"),
             "latin.csv": ("t,a,b\n2012-03-01 00:00,1,2\n# capteur \u00e9\n".encode("latin-1"),
                           r"latin.csv, line 3: byte 0xe9 at offset 37 is not valid UTF-8"),
             "words.csv": (b"t,a,b\n2012-03-01 00:00,1,fast\n2012-03-01 00:05,1,2\n",
                           r"words.csv: every reading must be a number")}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(GraphError, match=message):
            load_traffic(tmp_path / name, tmp_path / "adj.csv")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbft,a,b\n2012-03-01 00:00,1,2\n2012-03-01 00:05,3,4\n")
    series = load_traffic(tmp_path / "bom.csv", tmp_path / "adj.csv")
    assert series.sensor_ids.tolist() == ["a", "b"] and series.speed.tolist() == [[1, 2], [3, 4]]


def test_garbage_pickle_and_h5_are_graph_errors(tmp_path):
    (tmp_path / "adj_mx.pkl").write_bytes(b"garbage")
    (tmp_path / "s.h5").write_bytes(b"garbage")
    with pytest.raises(GraphError, match=r"s.h5 is not a readable pandas HDF5 file"):
        load_traffic(tmp_path / "s.h5", tmp_path / "adj_mx.pkl")
    with pytest.raises(GraphError, match=r"adj_mx.pkl is not a readable pickle"):
        read_dcrnn_pickle(tmp_path / "adj_mx.pkl")
