"""The transaction cut, pure: which messages it releases and which positions it lets commit.

Expectations are written out by hand per scenario (not computed by the cut's own code)."""

from __future__ import annotations

import time

from corisync_assets.cdc.cut import TransactionCut, transaction_id
from tests.support import debezium_events as ev

USERS, ATT, TX = "tc4a.public.users", "tc4a.public.training_attendance", "tc4a.transaction"
COLLECTIONS = {USERS: "public.users", ATT: "public.training_attendance"}


def data(topic: str, key: int, lsn: int, tx: str | None):
    return ev.envelope("c", key, None, ev.course_row(key), lsn=lsn, txid=lsn, ts_ms=lsn, transaction=tx)


def released(cut: TransactionCut):
    r = cut.release()
    return [(m.topic, m.offset) for m in r.messages], r.positions


def test_transaction_id_is_read_from_the_envelope_as_the_postgres_xid():
    # Debezium's ids are <xid>:<lsn> with a different LSN on BEGIN, each event and END of one transaction
    assert transaction_id(data(USERS, 1, 10, "571:9000")[1]) == "571"
    assert transaction_id(data(USERS, 1, 10, None)[1]) is None
    assert transaction_id(b"garbage") is None and transaction_id(None) is None


def test_a_transaction_is_released_only_when_all_its_tables_arrived():
    cut = TransactionCut(COLLECTIONS, TX)
    # tx A touches users (1 event) and attendance (1 event); its END is read before the attendance event
    cut.add(TX, 0, 0, *ev.transaction_event("BEGIN", "A:100"))
    cut.add(USERS, 0, 0, *data(USERS, 1, 10, "A:100"))
    cut.add(TX, 0, 1, *ev.transaction_event("END", "A:180", {"public.users": 1, "public.training_attendance": 1}))
    msgs, positions = released(cut)
    assert msgs == []  # the users half alone would be a cut that never existed in Postgres
    assert positions == {(USERS, 0): 0, (TX, 0): 1}  # nothing past the held event / the open END
    cut.add(ATT, 0, 0, *data(ATT, 1, 11, "A:160"))
    msgs, positions = released(cut)
    assert sorted(msgs) == [(ATT, 0), (USERS, 0)]
    assert positions == {(USERS, 0): 1, (ATT, 0): 1, (TX, 0): 2}


def test_transactions_complete_in_commit_order_and_tx_less_messages_follow_their_position():
    cut = TransactionCut(COLLECTIONS, TX)
    cut.add(USERS, 0, 0, *data(USERS, 1, 5, None))  # snapshot read: no transaction
    cut.add(USERS, 0, 1, *data(USERS, 2, 10, "A"))
    cut.add(USERS, 0, 2, USERS.encode(), None)  # tombstone: no transaction
    cut.add(USERS, 0, 3, *data(USERS, 3, 20, "B"))
    cut.add(TX, 0, 0, *ev.transaction_event("END", "A", {"public.users": 1, "public.training_attendance": 1}))
    cut.add(TX, 0, 1, *ev.transaction_event("END", "B", {"public.users": 1}))
    msgs, positions = released(cut)
    # B is complete, but A (committed first) is not: nothing after A's first event may pass
    assert msgs == [(USERS, 0)]
    assert positions == {(USERS, 0): 1, (TX, 0): 0}
    cut.add(ATT, 0, 0, *data(ATT, 9, 11, "A"))
    msgs, positions = released(cut)
    assert msgs == [(USERS, 1), (USERS, 2), (USERS, 3), (ATT, 0)]
    assert positions == {(USERS, 0): 4, (ATT, 0): 1, (TX, 0): 2}
    assert len(cut) == 0 and cut.waiting_transactions == 0


def test_without_transaction_metadata_everything_is_released():
    cut = TransactionCut(COLLECTIONS, None)
    cut.add(USERS, 0, 7, *data(USERS, 1, 10, "A"))
    msgs, positions = released(cut)
    assert msgs == [(USERS, 7)] and positions == {(USERS, 0): 8}


def test_a_malformed_transaction_event_is_reported_and_does_not_block():
    cut = TransactionCut(COLLECTIONS, TX)
    cut.add(TX, 0, 0, b"k", b"{not json")
    cut.add(USERS, 0, 0, *data(USERS, 1, 10, None))
    r = cut.release()
    assert [m.offset for m in r.messages] == [0]
    assert len(r.bad_transaction_events) == 1 and r.bad_transaction_events[0][0] == 0
    assert r.positions[(TX, 0)] == 1


def test_an_event_whose_end_never_comes_is_forced_out_after_the_hold_time():
    cut = TransactionCut(COLLECTIONS, TX, max_hold_s=0.05)
    cut.add(USERS, 0, 0, *data(USERS, 1, 10, "LOST"))
    cut.add(USERS, 0, 1, *data(USERS, 2, 20, "B"))
    cut.add(TX, 0, 0, *ev.transaction_event("END", "B", {"public.users": 1}))
    assert released(cut)[0] == []
    time.sleep(0.1)
    r = cut.release()
    assert [m.offset for m in r.messages] == [0, 1] and r.forced == 1
