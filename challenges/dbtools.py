"""Database helpers shared by the services.

Django's PostgreSQL backend binds query parameters on the client by default: psycopg writes
each value into the SQL text, so a 95 KiB binary value travels as 190 KiB of hexadecimal that
the server must read back character by character. :func:`server_bound_parameters` sends the
parameters of the queries in its block beside the SQL instead (PostgreSQL's extended
protocol), in the same connection and transaction. It is used where large binary values are
written (the per-case values of a result); the rest of the platform keeps Django's default,
under which every query it builds is known to work.

Under that client-side binding, psycopg also finds every placeholder of a query by scanning its
text in Python and adapts each value alone. :func:`many_ids` makes a long list of ids one array
parameter instead: reading 4,000 rows by id took 23 ms as a list, 9 ms as one array.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.models.expressions import RawSQL

MANY_IDS = 100


def many_ids(ids: Iterable[int]) -> list[int] | RawSQL:
    """The right-hand side of an ``__in`` filter on integer keys: on PostgreSQL, a long list
    becomes ``IN (SELECT unnest(%s::bigint[]))`` with the list as one parameter; elsewhere (and
    for a short list) the list itself. The rows matched are the same."""
    values = [int(i) for i in ids]
    if connection.vendor != "postgresql" or len(values) < MANY_IDS:
        return values
    return RawSQL("SELECT unnest(%s::bigint[])", (values,))


@contextmanager
def server_bound_parameters() -> Iterator[None]:
    """Within the block, queries of this thread's default connection have their parameters
    bound by the server (psycopg 3 on PostgreSQL; elsewhere nothing changes)."""
    if connection.vendor != "postgresql":
        yield
        return
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        yield
        return
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    raw = connection.connection
    previous = raw.cursor_factory
    raw.cursor_factory = ServerBindingCursor
    try:
        yield
    finally:
        raw.cursor_factory = previous
