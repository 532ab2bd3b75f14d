"""Debezium on the local stack: envelope on the topics, graceful restarts, broker loss -> re-snapshot."""

from __future__ import annotations

import time
import uuid

import pytest

from corisync_assets.cdc.connector_config import load_connector_config, settings_environ
from corisync_assets.local import broker, demo
from corisync_assets.local import stack as local_stack
from tests.local.cdc_helpers import end_offset, read, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.timeout(300)]

USERS = "tc4a.public.users"


def _insert_user(conn, name: str) -> int:
    return conn.execute(
        "INSERT INTO users (email, full_name, country_code, preferences) VALUES (%s, %s, 'DE', "
        "'{\"lang\": \"de\"}') RETURNING user_id", (f"{uuid.uuid4().hex}@example.com", name)).fetchone()[0]


def _mine(events, uid):
    return [e for e in events if e.key and e.key["payload"]["user_id"] == uid]


def test_insert_update_delete_reach_the_topic_as_debezium_envelopes(stack):
    start = end_offset(stack, USERS)
    with demo.connect(stack) as conn:
        uid = _insert_user(conn, "Envelope Test")
        conn.execute("UPDATE users SET full_name = 'Envelope Tested' WHERE user_id = %s", (uid,))
        conn.execute("DELETE FROM users WHERE user_id = %s", (uid,))
    events = wait_for(stack, USERS, lambda ev: len(_mine(ev, uid)) >= 4, start)
    mine = _mine(events, uid)
    assert [e.op for e in mine] == ["c", "u", "d", None]  # delete + tombstone
    create, update, delete, tombstone = mine
    assert create.value["schema"]["name"] == "tc4a.public.users.Envelope"
    assert create.before is None and create.after["full_name"] == "Envelope Test"
    assert update.before["full_name"] == "Envelope Test" and update.after["full_name"] == "Envelope Tested"
    assert delete.before["user_id"] == uid and delete.after is None
    assert tombstone.value is None and tombstone.key["payload"] == {"user_id": uid}
    assert create.value["payload"]["source"]["table"] == "users"


def test_runner_restart_neither_reemits_nor_skips(stack):
    with demo.connect(stack) as conn:
        before_uid = _insert_user(conn, "Before Restart")
    wait_for(stack, USERS, lambda ev: any(e.op == "c" for e in _mine(ev, before_uid)))
    time.sleep(2)  # let in-flight heartbeats settle (close() commits the offsets anyway)
    ends = {t: end_offset(stack, t) for t in topics(stack)}
    assert local_stack.stop_debezium(stack)
    with demo.connect(stack) as conn:  # written while the runner is down: must not be skipped
        during_uid = _insert_user(conn, "During Restart")
    result = up(stack)
    assert result.debezium == "started" and result.broker == "running"
    with demo.connect(stack) as conn:
        after_uid = _insert_user(conn, "After Restart")
    events = wait_for(stack, USERS, lambda ev: any(e.op == "c" for e in _mine(ev, after_uid)), ends[USERS])
    assert [(e.key["payload"]["user_id"], e.op) for e in events] == [(during_uid, "c"), (after_uid, "c")]
    for topic, end in ends.items():  # nothing re-emitted anywhere else either
        if topic != USERS:
            assert end_offset(stack, topic) == end, topic


def test_broker_restart_then_up_snapshots_again(stack):
    with demo.connect(stack) as conn:
        _insert_user(conn, "Survives Broker Loss")
        n_users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    assert broker.stop(stack)
    result = up(stack)
    assert result.broker == "started" and result.debezium == "started"
    events = wait_for(stack, USERS, lambda ev: sum(e.op == "r" for e in ev) >= n_users, timeout=120)
    snap = [e for e in events if e.op == "r"]
    assert len(snap) == n_users
    assert any(e.after["full_name"] == "Survives Broker Loss" for e in snap)
    # and streaming continues on the new broker
    with demo.connect(stack) as conn:
        uid = _insert_user(conn, "After Broker Loss")
    wait_for(stack, USERS, lambda ev: any(e.op == "c" for e in _mine(ev, uid)))


# --- helpers ----------------------------------------------------------------------------------------------


def topics(s):
    return load_connector_config(s.connector_config, settings_environ(s)).topics


def up(s):
    return local_stack.up(s, out=lambda _line: None)


def test_read_helper_sees_all_topics(stack):
    for topic in topics(stack):
        assert isinstance(read(stack, topic, end_offset(stack, topic)), list)
