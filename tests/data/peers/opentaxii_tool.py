"""Set up an OpenTAXII 0.9.3 database for the tests. Runs inside the peers virtualenv.

OPENTAXII_CONFIG names the server configuration (its databases are created if missing). Reads
one JSON job from stdin, does it, and prints one JSON result line on stdout:

    {"sync": "data.yml",                          # services, collections, accounts
     "load_files": [{"collection": "collection-a", "path": "x.xml",
                     "timestamp": "2024-01-01T00:00:00+00:00",
                     "binding": "urn:stix.mitre.org:xml:1.1.1"}, ...],
     "load_blocks": [{"collection": "big", "n": 10000,
                      "start": "2024-01-01T00:00:00+00:00", "step_seconds": 1.0}, ...]}

`load_files` goes through OpenTAXII's persistence API one block at a time (what the inbox
service does). `load_blocks` writes n generated STIX 1.1.1 packages (one IPv4 indicator each)
straight into the persistence layer's tables in one transaction: fast enough for 100,000s of
blocks. It assumes the SQLite backend (contiguous rowids under the write lock).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

import yaml
from libtaxii.constants import CB_STIX_XML_111
from opentaxii.cli import app
from opentaxii.entities import Account
from opentaxii.local import context
from opentaxii.persistence.sqldb.models import (
    ContentBlock,
    DataCollection,
    collection_to_content_block,
)
from opentaxii.taxii.entities import ContentBindingEntity, ContentBlockEntity
from opentaxii.utils import sync_conf_dict_into_db
from sqlalchemy import func, select, text

ADMIN = Account(id=None, username="feedgate-tests", permissions=None, is_admin=True)

PACKAGE = """<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" \
xmlns:indicator="http://stix.mitre.org/Indicator-2" xmlns:cybox="http://cybox.mitre.org/cybox-2" \
xmlns:AddressObj="http://cybox.mitre.org/objects#AddressObject-2" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xmlns:example="http://example.com/feedgate" id="example:Package-big-{i}" version="1.1.1">
<stix:STIX_Header><stix:Title>big block {i}</stix:Title></stix:STIX_Header>
<stix:Indicators><stix:Indicator xsi:type="indicator:IndicatorType" id="example:Indicator-big-{i}">
<indicator:Title>big indicator {i}</indicator:Title>
<indicator:Observable id="example:Observable-big-{i}"><cybox:Object id="example:Address-big-{i}">
<cybox:Properties xsi:type="AddressObj:AddressObjectType" category="ipv4-addr">
<AddressObj:Address_Value>{ip}</AddressObj:Address_Value></cybox:Properties>
</cybox:Object></indicator:Observable></stix:Indicator></stix:Indicators></stix:STIX_Package>"""


def _ip(i: int) -> str:
    # 10.0.0.0/8 holds 16.7 million distinct addresses: one per block
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _when(value: str) -> dt.datetime:
    # OpenTAXII on SQLite stores timestamp labels without their UTC offset: store UTC.
    when = dt.datetime.fromisoformat(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _collection(persistence, name: str):
    collection = persistence.api.get_collection(name)
    if collection is None:
        raise SystemExit(f"no collection named {name!r}")
    return collection


def sync(server, path: str) -> None:
    with open(path) as stream:
        config = yaml.safe_load(stream)
    sync_conf_dict_into_db(server, config, force_collection_deletion=True)


def load_file(persistence, job: dict) -> None:
    collection = _collection(persistence, job["collection"])
    with open(job["path"], encoding="utf-8") as stream:
        content = stream.read()
    entity = ContentBlockEntity(
        content=content,
        timestamp_label=_when(job["timestamp"]),
        content_binding=ContentBindingEntity(job.get("binding", CB_STIX_XML_111)),
    )
    persistence.api.create_content_block(entity, collection_ids=[collection.id])


def load_blocks(persistence, job: dict) -> dict:
    collection = _collection(persistence, job["collection"])
    n = int(job["n"])
    step = dt.timedelta(seconds=float(job.get("step_seconds", 1.0)))
    engine = persistence.api.db.engine
    table = ContentBlock.__table__
    links = collection_to_content_block
    now = dt.datetime.now(dt.UTC)
    began = time.monotonic()
    with engine.begin() as conn:
        # Defaults: go on after the collection's newest block; number blocks (and so their IPv4
        # addresses) after every block in the database.
        if job.get("start"):
            start = _when(job["start"])
        else:
            newest = conn.execute(
                select(func.max(table.c.timestamp_label))
                .select_from(table.join(links, links.c.content_block_id == table.c.id))
                .where(links.c.collection_id == collection.id)
            ).scalar()
            start = (
                newest.replace(tzinfo=dt.UTC) + step
                if newest is not None
                else dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
            )
        first = int(
            job.get("first_index", conn.execute(select(func.max(table.c.id))).scalar() or 0)
        )
        batch = 5000
        for offset in range(0, n, batch):
            rows = [
                {
                    "date_created": now,
                    "timestamp_label": start + step * i,
                    "content": PACKAGE.format(i=first + i, ip=_ip(first + i)).encode(),
                    "binding_id": CB_STIX_XML_111,
                    "binding_subtype": None,
                    "message": None,
                    "inbox_message_id": None,
                }
                for i in range(offset, min(n, offset + batch))
            ]
            conn.execute(table.insert(), rows)
        # The write lock is held since the first insert: our rows are the last n rowids.
        last = conn.execute(select(func.max(table.c.id))).scalar_one()
        conn.execute(
            text(
                f"INSERT INTO {links.name} (collection_id, content_block_id)"
                f" SELECT :cid, id FROM {table.name} WHERE id > :low"
            ),
            {"cid": collection.id, "low": last - n},
        )
        conn.execute(
            DataCollection.__table__.update()
            .where(DataCollection.__table__.c.id == collection.id)
            .values(volume=DataCollection.__table__.c.volume + n)
        )
    return {
        "collection": job["collection"],
        "n": n,
        "first": start.isoformat() if n else None,
        "last": (start + step * (n - 1)).isoformat() if n else None,
        "seconds": round(time.monotonic() - began, 3),
    }


def main() -> None:
    job = json.load(sys.stdin)
    result: dict = {"load_blocks": []}
    with app.app_context():
        context.account = ADMIN
        server = app.taxii_server
        persistence = server.servers.taxii1.persistence
        if job.get("sync"):
            sync(server, job["sync"])
        for item in job.get("load_files", []):
            load_file(persistence, item)
        for item in job.get("load_blocks", []):
            result["load_blocks"].append(load_blocks(persistence, item))
        result["volumes"] = {
            c.name: persistence.api.get_content_blocks_count(collection_id=c.id)
            for c in persistence.api.get_collections()
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
