"""The location of undecodable bytes: file, line (counted from 1) and byte offset."""
from graphcore.datasets.text import undecodable_at


def test_undecodable_byte_is_located_by_line_and_offset():
    data = "a,b\n1,2\nRésumé,3\n".encode("latin-1")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        assert undecodable_at("t.csv", data, err) == "t.csv, line 3: byte 0xe9 at offset 9"
    else:
        raise AssertionError("latin-1 bytes decoded as UTF-8")
