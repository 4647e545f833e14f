"""Pickle Arrow tables as IPC streams: how batches travel between Beam stages.

Beam encodes elements that cross a stage boundary with pickle. pyarrow's own pickling of a table
writes every buffer the table references, whole, with the default protocol: for a table made of
slices of a larger one it writes the parent's buffers again for every slice (at 200k events, 857 MB
instead of 130 MB) and takes ~20x longer than the Arrow IPC stream format, which writes only the
rows in view. The stream is LZ4-compressed: the DirectRunner keeps the encoded batches of every
shuffle in memory, and compression halved the peak of a 1M-event run (4.4 GB -> 2.2 GB) at no
measurable cost in time. Registering the IPC form with copyreg makes every pickler (pickle,
cloudpickle, dill) use it; importing this module is enough (pipelines.transforms does).

    >>> import pickle, pyarrow as pa
    >>> pickle.loads(pickle.dumps(pa.table({"n": [1, 2, 3]}).slice(1))).column("n").to_pylist()
    [2, 3]
"""
from __future__ import annotations

import copyreg

import pyarrow as pa

_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def table_from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _table_to_ipc(table: pa.Table):
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_OPTIONS) as writer:
        writer.write_table(table)
    return table_from_ipc, (sink.getvalue(),)


copyreg.pickle(pa.Table, _table_to_ipc)
