"""Console users and sessions (feedgate.feeds.console_users) on a real SQLite database, with an
injected clock: argon2id hashes, verify for unknown names, sessions stored as digests, idle and
absolute expiry, logout, password changes and deletions ending sessions, throttling per
address, CSRF tokens, rehashing of old hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from feedgate.db import engine
from feedgate.feeds.console_users import (
    FAILURE_WINDOW,
    IDLE_TIMEOUT,
    MAX_FAILURES,
    MAX_SESSION_AGE,
    MIN_PASSWORD_LENGTH,
    ConsoleUserError,
    ConsoleUsers,
    LoginRefused,
    csrf_token,
    throttle_key,
)

PASSWORD = "correct horse battery"
#: Cheaper argon2 parameters than the default, for speed: still argon2id, still verified.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, by: timedelta) -> None:
        self.at += by


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def eng(tmp_path: Path) -> sa.Engine:
    return engine(str(tmp_path / "feeds.db"))


@pytest.fixture
def users(eng: sa.Engine, clock: Clock) -> ConsoleUsers:
    return ConsoleUsers(eng, now=clock, hasher=CHEAP)


def stored(eng: sa.Engine, sql: str) -> list[tuple[object, ...]]:
    with eng.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql))]


# --- users -------------------------------------------------------------------------------------


def test_add_list_get_delete(users: ConsoleUsers, clock: Clock) -> None:
    added = users.add("admin", PASSWORD)
    users.add("bob@example.org", PASSWORD + "2")
    assert added.created == clock.at and added.last_login is None
    assert [u.name for u in users.list()] == ["admin", "bob@example.org"]
    assert users.get("admin") == added
    assert users.get("nobody") is None
    assert users.delete("bob@example.org") is True
    assert users.delete("bob@example.org") is False
    assert [u.name for u in users.list()] == ["admin"]


def test_passwords_are_kept_as_argon2id_hashes(users: ConsoleUsers, eng: sa.Engine) -> None:
    users.add("admin", PASSWORD)
    ((hashed,),) = stored(eng, "SELECT password_hash FROM console_users")
    assert isinstance(hashed, str) and hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed


def test_a_name_taken_twice_is_refused_saying_how_to_change_the_password(
    users: ConsoleUsers,
) -> None:
    users.add("admin", PASSWORD)
    with pytest.raises(ConsoleUserError, match=r"exists.*feedgate admin set-password admin"):
        users.add("admin", PASSWORD)


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "é", "a\x00"])
def test_bad_names_are_refused(users: ConsoleUsers, name: str) -> None:
    with pytest.raises(ConsoleUserError, match="user name"):
        users.add(name, PASSWORD)


def test_empty_and_short_passwords_are_refused_without_echoing_them(
    users: ConsoleUsers,
) -> None:
    with pytest.raises(ConsoleUserError, match="empty"):
        users.add("admin", "")
    short = "s3cr3t-pw"
    with pytest.raises(ConsoleUserError, match=f"at least {MIN_PASSWORD_LENGTH}") as info:
        users.add("admin", short)
    assert short not in str(info.value)
    assert users.list() == []


def test_verify(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    assert users.verify("admin", PASSWORD) is True
    assert users.verify("admin", PASSWORD + "x") is False
    assert users.verify("nobody", PASSWORD) is False  # checked against a dummy hash


def test_set_password_changes_it_and_ends_the_users_sessions(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    token = users.login("admin", PASSWORD, "192.0.2.1").token
    users.set_password("admin", "another long password")
    assert users.session(token) is None
    assert users.verify("admin", PASSWORD) is False
    assert users.verify("admin", "another long password") is True
    with pytest.raises(ConsoleUserError, match="no console user named ghost"):
        users.set_password("ghost", "another long password")
    with pytest.raises(ConsoleUserError, match="empty"):
        users.set_password("admin", "")


def test_delete_ends_the_users_sessions(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    token = users.login("admin", PASSWORD, "192.0.2.1").token
    users.delete("admin")
    assert users.session(token) is None


# --- sessions ----------------------------------------------------------------------------------


def test_login_begins_a_session_stored_only_as_a_digest(
    users: ConsoleUsers, eng: sa.Engine, clock: Clock
) -> None:
    users.add("admin", PASSWORD)
    new = users.login("admin", PASSWORD, "192.0.2.1")
    assert len(new.token) >= 43  # 256 bits, URL-safe
    assert new.session.user == "admin" and new.session.csrf_token == csrf_token(new.token)
    session = users.session(new.token)
    assert session is not None and session.user == "admin" and session.created == clock.at
    rows = stored(eng, "SELECT token_digest, address FROM console_sessions")
    assert len(rows) == 1 and rows[0][1] == "192.0.2.1"
    assert new.token.encode() not in bytes(rows[0][0])  # type: ignore[arg-type]
    assert users.get("admin").last_login == clock.at  # type: ignore[union-attr]
    assert users.session("not-a-token") is None and users.session(None) is None


def test_a_wrong_password_or_unknown_name_begins_nothing(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    for name, password in [("admin", "wrong password!"), ("nobody", PASSWORD)]:
        with pytest.raises(LoginRefused) as info:
            users.login(name, password, "192.0.2.1")
        assert info.value.reason == "wrong"
    assert users.session_count("admin") == 0


def test_idle_sessions_end(users: ConsoleUsers, clock: Clock) -> None:
    users.add("admin", PASSWORD)
    token = users.login("admin", PASSWORD, "192.0.2.1").token
    clock.advance(IDLE_TIMEOUT - timedelta(minutes=1))
    assert users.session(token) is not None  # used: idle from here again
    clock.advance(IDLE_TIMEOUT - timedelta(minutes=1))
    assert users.session(token) is not None
    clock.advance(IDLE_TIMEOUT)
    assert users.session(token) is None
    assert users.session_count("admin") == 0  # the ended session's row is gone


def test_sessions_end_after_their_maximum_age_even_in_use(
    users: ConsoleUsers, clock: Clock
) -> None:
    users.add("admin", PASSWORD)
    token = users.login("admin", PASSWORD, "192.0.2.1").token
    used = timedelta()
    while used + IDLE_TIMEOUT / 2 < MAX_SESSION_AGE:
        clock.advance(IDLE_TIMEOUT / 2)
        used += IDLE_TIMEOUT / 2
        assert users.session(token) is not None
    clock.advance(IDLE_TIMEOUT / 2)
    assert users.session(token) is None


def test_logout_deletes_the_session(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    one = users.login("admin", PASSWORD, "192.0.2.1")
    other = users.login("admin", PASSWORD, "192.0.2.2")
    assert users.logout(one.token) is True
    assert users.session(one.token) is None
    assert users.logout(one.token) is False
    assert users.session(other.token) is not None  # the admin's other session goes on
    assert users.session_count("admin") == 1


def test_a_login_purges_ended_sessions(users: ConsoleUsers, clock: Clock) -> None:
    users.add("admin", PASSWORD)
    users.login("admin", PASSWORD, "192.0.2.1")
    clock.advance(IDLE_TIMEOUT)
    users.login("admin", PASSWORD, "192.0.2.1")
    assert users.session_count("admin") == 1


def test_csrf_tokens_differ_per_session_and_come_from_the_cookie_alone() -> None:
    assert csrf_token("a") == csrf_token("a") != csrf_token("b")
    assert "=" not in csrf_token("a") and len(csrf_token("a")) == 43


def test_an_old_hash_is_renewed_at_the_next_good_login(
    eng: sa.Engine, clock: Clock, users: ConsoleUsers
) -> None:
    users.add("admin", PASSWORD)
    ((before,),) = stored(eng, "SELECT password_hash FROM console_users")
    stronger = ConsoleUsers(eng, now=clock, hasher=PasswordHasher(time_cost=2, memory_cost=2048))
    stronger.login("admin", PASSWORD, "192.0.2.1")
    ((after,),) = stored(eng, "SELECT password_hash FROM console_users")
    assert before != after and "m=2048,t=2" in str(after)
    assert stronger.verify("admin", PASSWORD)


# --- throttling --------------------------------------------------------------------------------


def _fail(users: ConsoleUsers, address: str, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(LoginRefused) as info:
            users.login("admin", "not the password", address)
        assert info.value.reason == "wrong"


def test_repeated_failures_throttle_the_address_even_for_the_right_password(
    users: ConsoleUsers, clock: Clock
) -> None:
    users.add("admin", PASSWORD)
    _fail(users, "198.51.100.7", MAX_FAILURES)
    assert users.throttled("198.51.100.7") == FAILURE_WINDOW
    with pytest.raises(LoginRefused) as info:
        users.login("admin", PASSWORD, "198.51.100.7")
    assert info.value.reason == "throttled" and info.value.retry_after == FAILURE_WINDOW
    assert users.session_count("admin") == 0
    users.login("admin", PASSWORD, "198.51.100.8")  # another address is not throttled
    clock.advance(FAILURE_WINDOW - timedelta(minutes=5))
    assert users.throttled("198.51.100.7") == timedelta(minutes=5)
    clock.advance(timedelta(minutes=5))  # the oldest failure left the window: one more try
    assert users.throttled("198.51.100.7") is None
    users.login("admin", PASSWORD, "198.51.100.7")


def test_failures_spread_out_do_not_throttle(users: ConsoleUsers, clock: Clock) -> None:
    users.add("admin", PASSWORD)
    for _ in range(3 * MAX_FAILURES):
        _fail(users, "198.51.100.7")
        clock.advance(FAILURE_WINDOW / (MAX_FAILURES - 1))
    assert users.throttled("198.51.100.7") is None


def test_a_good_login_clears_the_addresss_failures(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    _fail(users, "198.51.100.7", MAX_FAILURES - 1)
    users.login("admin", PASSWORD, "198.51.100.7")
    _fail(users, "198.51.100.7", MAX_FAILURES - 1)
    assert users.throttled("198.51.100.7") is None


def test_unknown_names_count_as_failures(users: ConsoleUsers) -> None:
    for _ in range(MAX_FAILURES):
        with pytest.raises(LoginRefused):
            users.login("nobody", PASSWORD, "198.51.100.7")
    assert users.throttled("198.51.100.7") is not None


def test_ipv6_clients_are_throttled_by_their_64() -> None:
    assert throttle_key("2001:db8:1:2::1") == throttle_key("2001:db8:1:2:ffff::9")
    assert throttle_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert throttle_key("2001:db8:1:3::1") != throttle_key("2001:db8:1:2::1")
    assert throttle_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert throttle_key(None) == "unknown"
    assert throttle_key("x" * 100) == "x" * 64


def test_ipv6_addresses_of_one_64_share_a_throttle(users: ConsoleUsers) -> None:
    users.add("admin", PASSWORD)
    for i in range(MAX_FAILURES):
        _fail(users, f"2001:db8:1:2::{i + 1:x}")
    assert users.throttled("2001:db8:1:2::abcd") is not None
    assert users.throttled("2001:db8:1:3::1") is None
