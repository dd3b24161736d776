from fastapi.testclient import TestClient

from restock_core.api import create_api
from restock_core.app import App
from restock_core.config import parse_config


def test_health_hides_the_database_error() -> None:
    """/health is public: an unreachable database is a bare 503, the driver's words stay in the log."""
    url = "postgresql+psycopg://secret-user@127.0.0.1:9/secret-db?connect_timeout=2"
    app = App(parse_config({"restock": {"database": url}}))
    try:
        answer = TestClient(create_api(app)).get("/health")
    finally:
        app.close()
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable"}
    assert "secret" not in answer.text and "127.0.0.1" not in answer.text
