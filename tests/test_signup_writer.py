"""Group commit of sign-ups (SignUpWriter), on SQLite and PostgreSQL: every caller gets the
answer of its own row, after the transaction that holds it has committed."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa

from restock_core.app import App
from restock_core.config import parse_config
from restock_core.db import consents, subscriptions, utcnow
from restock_core.errors import ContactLimitError
from restock_core.signup import SignUpContext
from restock_core.store.subscriptions import lock_contacts
from tests.support import Recorder
from tests.support import sign_up_write as write


def rows(app: Any, contact: str) -> list[Any]:
    with app.engine.connect() as conn:
        return conn.execute(
            sa.select(subscriptions.c.id, subscriptions.c.variant_id).where(
                subscriptions.c.contact == contact
            )
        ).all()


def consent_count(app: Any) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(consents)).scalar_one())


def test_concurrent_sign_ups_are_stored_once_with_the_right_created_flags(make_app) -> None:
    recorder = Recorder()
    app = make_app(plugins=[recorder])
    threads, per_thread = 24, 8
    barrier = threading.Barrier(threads)
    results: list[tuple[str, str, int, bool]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def sign_up(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            # half the sign-ups are the same (variant, contact) for every thread
            contact = f"shared{i}@example.com" if i % 2 else f"t{t}-{i}@example.com"
            variant = f"v{i % 3}"
            try:
                result = app.subscribe(
                    variant,
                    email=contact,
                    context=SignUpContext(trusted=False, ip=f"10.1.{t}.{i}"),
                )
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                continue
            with lock:
                results.append((variant, contact, result.subscription.id, result.created))

    pool = [threading.Thread(target=sign_up, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    by_key: dict[tuple[str, str], set[int]] = {}
    created: dict[tuple[str, str], int] = {}
    for variant, contact, sid, was_created in results:
        by_key.setdefault((variant, contact), set()).add(sid)
        created[(variant, contact)] = created.get((variant, contact), 0) + was_created
    assert all(len(ids) == 1 for ids in by_key.values())  # everyone got the one row
    assert all(n == 1 for n in created.values())  # exactly one caller was told "created"
    with app.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(subscriptions)).scalar_one()
    assert stored == len(by_key) == threads * per_thread // 2 + per_thread // 2
    assert consent_count(app) == stored
    assert sorted(recorder.created) == sorted(next(iter(i)) for i in by_key.values())


def test_one_group_stores_new_rows_and_answers_repeats_and_limits(make_app) -> None:
    app = make_app()
    existing = app.subscribe("v1", email="old@example.com").subscription
    writer = app.store.subscriptions.writer
    new, repeat, same_contact, limited = (
        write("new@example.com"),
        write("old@example.com"),
        write("new@example.com", variant="v2"),  # a second sign-up of a contact in the group
        write("old@example.com", variant="v3", max_active=1),
    )
    writer.store_group([new, repeat, same_contact, limited])
    sub, created = new.result()  # type: ignore[misc]
    assert created and sub.contact == "new@example.com"
    again, created_again = repeat.result()  # type: ignore[misc]
    assert not created_again and again.id == existing.id
    other, other_created = same_contact.result()  # type: ignore[misc]
    assert other_created and other.variant_id == "v2"
    with pytest.raises(ContactLimitError):
        limited.result()
    assert len(rows(app, "new@example.com")) == 2
    assert [r.variant_id for r in rows(app, "old@example.com")] == ["v1"]
    assert consent_count(app) == 3  # old, new/v1, new/v2


def test_a_failing_sign_up_in_a_group_fails_alone(make_app) -> None:
    app = make_app()
    writer = app.store.subscriptions.writer
    good1, bad, good2 = (
        write("a@example.com"),
        write("b@example.com", values={"source": None}),  # NOT NULL: the group's INSERT fails
        write("c@example.com"),
    )
    writer.store_group([good1, bad, good2])
    assert good1.result()[1] and good2.result()[1]  # type: ignore[index]
    with pytest.raises(sa.exc.IntegrityError):
        bad.result()
    assert rows(app, "b@example.com") == []
    assert len(rows(app, "a@example.com")) == len(rows(app, "c@example.com")) == 1
    assert consent_count(app) == 2


def test_a_group_rolled_back_after_its_insert_answers_no_success(make_app) -> None:
    """The consent insert of one sign-up fails after the group's rows were inserted: the
    transaction rolls back, the others are stored again one by one, and the failing one is
    answered with the error, its row not stored."""
    app = make_app()
    with app.engine.begin() as conn:
        if app.is_postgres:
            conn.execute(
                sa.text(
                    "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.user_agent = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                sa.text(
                    "CREATE TRIGGER consent_boom BEFORE INSERT ON consents "
                    "FOR EACH ROW EXECUTE FUNCTION boom()"
                )
            )
        else:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER consent_boom BEFORE INSERT ON consents "
                    "WHEN NEW.user_agent = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END"
                )
            )
    writer = app.store.subscriptions.writer
    good, bad = write("a@example.com"), write("b@example.com", consent={"user_agent": "boom"})
    writer.store_group([good, bad])
    assert writer.groups == 0  # the group's transaction failed
    assert good.result()[1]  # type: ignore[index]
    with pytest.raises(sa.exc.DBAPIError):
        bad.result()
    assert rows(app, "b@example.com") == []
    assert len(rows(app, "a@example.com")) == 1 and consent_count(app) == 1


def test_a_closed_writer_stores_in_the_callers_thread(make_app) -> None:
    app = make_app()
    app.subscribe("v1", email="a@example.com")  # starts the writer thread
    app.store.subscriptions.close()
    stored = app.store.subscriptions.insert_or_get(write("b@example.com").values)
    assert stored is not None and stored[1]
    assert len(rows(app, "b@example.com")) == 1


def _waiting_for_an_advisory_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            ).scalar_one()
        )


@pytest.mark.parametrize("path", ["group", "one"])
def test_the_contact_limit_holds_against_another_api_process_on_postgresql(
    postgres_url: str, path: str
) -> None:
    """Another API process is storing two sign-ups of the same contact (its transaction has
    taken the contact's lock and inserted them, not yet committed). This process's sign-up,
    with a limit of two active sign-ups per contact, waits for that transaction instead of
    counting only committed rows (zero) and storing a third; once the other commits, it
    counts two and is refused."""
    app = App(parse_config({"restock": {"database": postgres_url}}))
    app.migrate()
    other = sa.create_engine(app.engine.url)
    try:
        outcome: list[Any] = []
        limited = write("ada@example.com", variant="v3", max_active=2)
        store = app.store.subscriptions

        def sign_up() -> None:
            try:
                if path == "group":
                    store.writer.store_group([limited])
                    outcome.append(limited.result())
                else:
                    outcome.append(store._store_one(limited))
            except ContactLimitError as exc:
                outcome.append(exc)

        with other.connect() as conn, conn.begin():
            lock_contacts(conn, ["ada@example.com"])  # what the other writer does first
            conn.execute(
                sa.insert(subscriptions),
                [
                    {**write("ada@example.com", variant=v).values, "status": "pending"}
                    | {"created_at": utcnow(), "updated_at": utcnow()}
                    for v in ("v1", "v2")
                ],
            )
            thread = threading.Thread(target=sign_up)
            thread.start()
            deadline = time.monotonic() + 20
            while not _waiting_for_an_advisory_lock(app.engine):
                assert time.monotonic() < deadline, "the sign-up did not wait for the contact"
                assert thread.is_alive(), f"the sign-up went ahead: {outcome}"
                time.sleep(0.02)
        thread.join(20)
        assert len(outcome) == 1 and isinstance(outcome[0], ContactLimitError)
        assert sorted(r.variant_id for r in rows(app, "ada@example.com")) == ["v1", "v2"]
    finally:
        other.dispose()
        app.close()
