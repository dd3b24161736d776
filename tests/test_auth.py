"""Caller kinds and keys (restock_core.auth): public, secret key, admin key."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.auth import Caller, CallerDep, require_secret_key
from restock_core.config import parse_config
from restock_core.errors import ConfigError
from restock_core.hookspecs import hookimpl

ADMIN = {"Authorization": "Bearer admin-key"}
SECRET = {"Authorization": "Bearer secret-key"}


class Backend:
    """A plugin mounting one server-to-server route, as the commerce API does."""

    @hookimpl
    def register_routes(self, register, app):  # type: ignore[no-untyped-def]
        router = APIRouter(dependencies=[Depends(require_secret_key)])

        @router.get("/whoami")
        def whoami(who: CallerDep) -> dict[str, str]:
            return {"caller": str(who)}

        register("backend", router)


def _client(make_app, **settings):  # type: ignore[no-untyped-def]
    app = make_app({"restock": settings}, plugins=[Backend()])
    return TestClient(create_api(app), raise_server_exceptions=False)


def test_secret_key_route(make_app) -> None:
    with _client(make_app, admin_api_key="admin-key", secret_api_key="secret-key") as client:
        assert client.get("/backend/whoami", headers=SECRET).json() == {"caller": "secret"}
        assert client.get("/backend/whoami", headers=ADMIN).json() == {"caller": "admin"}
        missing = client.get("/backend/whoami")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
        wrong = client.get("/backend/whoami", headers={"Authorization": "Bearer secret-kez"})
        assert wrong.status_code == 401
        malformed = client.get("/backend/whoami", headers={"Authorization": "secret-key"})
        assert malformed.status_code == 401
        # the secret key is not the admin key
        assert client.get("/subscriptions", headers=SECRET).status_code == 403
        assert client.get("/subscriptions", headers=ADMIN).status_code == 200


def test_server_routes_disabled_without_keys(make_app) -> None:
    with _client(make_app) as client:
        refused = client.get("/backend/whoami", headers=SECRET)
        assert refused.status_code == 403 and "secret_api_key" in refused.json()["error"]["message"]


def test_secret_key_from_env_is_hidden(monkeypatch) -> None:
    monkeypatch.setenv("SHOP_BACKEND_KEY", "s3cr3t-value")
    settings = parse_config({"restock": {"secret_api_key": {"env": "SHOP_BACKEND_KEY"}}}).settings
    assert settings.secret_api_key is not None
    assert settings.secret_api_key.value == "s3cr3t-value"
    assert "s3cr3t" not in repr(settings)
    with pytest.raises(ConfigError, match="secret_api_key"):
        parse_config({"restock": {"secret_api_key": 5}})


def test_caller_trust() -> None:
    assert not Caller.PUBLIC.trusted and Caller.SECRET.trusted and Caller.ADMIN.trusted
