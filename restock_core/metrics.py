"""Prometheus metrics. Each App has its own registry so several apps (tests, embedding)
never collide; /metrics exposes it together with live queue figures from the database."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.queue_collector: object | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.signups = Counter("restock_signups", "New subscriptions", ["channel"], registry=r)
        self.stock_updates = Counter(
            "restock_stock_updates",
            "Stock updates recorded or dropped as stale",
            ["result"],
            registry=r,
        )
        self.restocks = Counter("restock_restocks_opened", "Restocks detected", registry=r)
        self.released = Counter("restock_subscribers_released", "Subscribers released", registry=r)
        self.deliveries = Counter(
            "restock_deliveries",
            "Delivery attempts by outcome and provider",
            ["provider", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "restock_delivery_retries",
            "Deliveries scheduled for another attempt",
            ["provider"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "restock_provider_send_seconds",
            "Time per provider send() call",
            ["provider"],
            registry=r,
        )
        self.delivery_events = Counter(
            "restock_delivery_events",
            "Provider status webhooks applied",
            ["provider", "event"],
            registry=r,
        )
        self.rate_limited = Counter(
            "restock_provider_rate_limited",
            "Provider send calls answered 429 (the provider is paused until Retry-After)",
            ["provider"],
            registry=r,
        )
        self.auth_failures = Counter(
            "restock_provider_auth_failures",
            "Provider send calls refused for the credentials (401/403)",
            ["provider"],
            registry=r,
        )
        self.provider_down = Gauge(
            "restock_provider_outage",
            "1 while the provider refuses restock's credentials (sends paused), else 0",
            ["provider"],
            registry=r,
        )
        self.observer_errors = Counter(
            "restock_observer_errors",
            "Observer hook implementations that raised",
            ["hook"],
            registry=r,
        )
        self.conversions = Counter(
            "restock_conversions", "Conversions recorded (attribution)", registry=r
        )
        self.revenue = Counter(
            "restock_revenue",
            "Revenue of recorded conversions, by currency",
            ["currency"],
            registry=r,
        )
