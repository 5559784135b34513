"""The sink database's identity: refuse to start fresh where a database used to be.

SQLite creates an empty database wherever ``sink.db`` is missing, so a sink
whose database file was deleted or emptied (a lost disk, a careless restore)
would silently start from nothing and every write it had acknowledged would be
gone. At its first creation the sink gives the database an id, stored twice:
in the database (table ``meta``) and in ``<data-dir>/sink-id.json`` beside it
(written atomically, fsynced). At every start (:func:`check_identity`, before
SQLite opens the file):

=====================  =======================  ==========================================
sink.db                sink-id.json             what the sink does
=====================  =======================  ==========================================
missing or 0 bytes     absent                   first start: create, give it an id
missing or 0 bytes     present                  refuse (exit 2): the database was lost
present                absent                   adopt: write the marker from the db's id
present, same id       present                  start
present, other id      present                  refuse (exit 2): another database's file
not a database         either                   refuse (exit 2): SQLite's own message
=====================  =======================  ==========================================

``PRAGMA quick_check`` runs at each start as well (milliseconds for the
testbed's databases): a damaged b-tree page refuses the start naming the file.

Not detected here (the audit reports them as ``lost``): a wipe of the whole
data dir (marker and database go together: indistinguishable from a first
start), a rollback of the whole dir to an older copy (consistent but old), a
bit flipped inside a stored value (SQLite keeps no page checksums), a torn or
damaged WAL (SQLite drops the frames after the first bad checksum: the last
commits vanish). Knowing about those takes a witness outside the data dir.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from nodes.common.durable import atomic_write_json, read_json
from nodes.common.runtime import RefuseToStart

MARKER_FILE = "sink-id.json"
_META = "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID"


def check_identity(db_path: Path) -> str:
    """Check ``db_path`` against its marker before the sink opens it; return the db id.

    Raises:
        RefuseToStart: the database is missing or empty while its marker says it existed,
            belongs to another database, or fails SQLite's quick_check / is not a database.
    """
    db_path = Path(db_path)
    marker_path = db_path.with_name(MARKER_FILE)
    try:
        marker = read_json(marker_path)
    except ValueError as e:
        raise RefuseToStart(f"{marker_path}: not valid JSON ({e})") from None
    exists = db_path.is_file() and db_path.stat().st_size > 0
    if not exists and marker is not None:
        raise RefuseToStart(
            f"{db_path} is {'empty' if db_path.exists() else 'missing'} but {marker_path} says database "
            f"{marker.get('db_id')} was created here at {marker.get('created')}: refusing to start "
            f"from an empty database (every write it acknowledged would be lost)")
    try:
        con = sqlite3.connect(str(db_path), isolation_level=None)
        try:
            if exists:
                ok = con.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise RefuseToStart(f"{db_path} fails SQLite's quick_check: {ok}")
            con.execute(_META)
            row = con.execute("SELECT value FROM meta WHERE key = 'db_id'").fetchone()
            if row is None:
                db_id = uuid.uuid4().hex
                con.execute("INSERT INTO meta(key, value) VALUES ('db_id', ?)", (db_id,))
            else:
                db_id = row[0]
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise RefuseToStart(f"{db_path} is not a usable SQLite database: {e}") from None
    if marker is not None and marker.get("db_id") != db_id:
        raise RefuseToStart(f"{db_path} holds database {db_id} but {marker_path} says "
                            f"{marker.get('db_id')}: the file was replaced by another database's")
    if marker is None:
        atomic_write_json(marker_path, {"db_id": db_id, "created": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return db_id
