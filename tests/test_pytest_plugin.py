"""The pytest plugin shipped with restock-core, used the way a plugin author uses it: a test
project of its own, run by a separate pytest process (`pytester`)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONTRACT_TEST = """
import pytest

from restock_core.models import Channel, SendResult
from restock_core.testing import ProviderContract


class DropsTheLast:
    name = "drops-the-last"
    channels = frozenset({Channel.EMAIL})
    max_batch_size = 5

    def send(self, messages):
        return [SendResult.sent(m.delivery_id, "id-%d" % m.delivery_id) for m in messages[:-1]]


class Fake:
    def accept(self):
        pass

    def received(self):
        return []


@pytest.fixture
def provider():
    return DropsTheLast()


@pytest.fixture
def provider_fake():
    return Fake()


@pytest.fixture
def contract_channel():
    return Channel.EMAIL


@pytest.fixture
def provider_secrets():
    return []


class TestDropsTheLast(ProviderContract):
    pass
"""


def test_failing_contract_shows_the_compared_values(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_contract=CONTRACT_TEST)
    args = ["-k", "one_result_per_message", "-p", "no:cacheprovider"]
    compared = [
        r".*assert \[1, 2, 3, 4\] == \[1, 2, 3, 4, 5\]",
        r".*Right contains one more item: 5",
    ]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(failed=1)
    result.stdout.re_match_lines(compared)  # both sides and the difference
    # with plugin autoloading off and no restock plugin: a bare AssertionError ...
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    bare = pytester.runpytest_subprocess(*args)
    bare.assert_outcomes(failed=1)
    assert "Right contains one more item" not in bare.stdout.str()
    # ... and loading the plugin by hand is what turns the rewriting on
    explicit = pytester.runpytest_subprocess(*args, "-p", "restock_core.pytest_plugin")
    explicit.assert_outcomes(failed=1)
    explicit.stdout.re_match_lines(compared)


APP_TEST = """
def test_a_restock_notifies_the_subscriber(restock_app):
    signup = restock_app.subscribe("v1", email="ada@example.com")
    restock_app.set_stock("v1", 2)
    restock_app.worker().drain()
    assert restock_app.get_subscription(signup.subscription.id).status == "notified"


def test_make_app_takes_settings_and_plugins(make_app, database_url):
    app = make_app({"restock": {"inventory_required": 3}})
    assert app.settings.inventory_required == 3
    assert app.settings.database == database_url
"""


def test_fixtures_work_in_a_plugin_authors_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_app=APP_TEST)
    monkeypatch.setenv("RESTOCK_TEST_PG", "off")  # SQLite only, on purpose; even in CI
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "--strict-markers")
    result.assert_outcomes(passed=2, skipped=2)
    result.stdout.fnmatch_lines(["*PostgreSQL tests are turned off (RESTOCK_TEST_PG=off)*"])


def test_unreachable_postgres_fails_in_ci_and_skips_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_pg="def test_pg(postgres_url):\n    assert postgres_url\n")
    monkeypatch.setenv("RESTOCK_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:1/test")
    monkeypatch.setenv("CI", "true")
    in_ci = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    in_ci.assert_outcomes(errors=1)
    in_ci.stdout.fnmatch_lines(["*PostgreSQL is required in CI and is not reachable*"])
    monkeypatch.setenv("CI", "false")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(skipped=1)
