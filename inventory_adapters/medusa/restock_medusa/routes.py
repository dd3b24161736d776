"""Routes the core mounts under `/<instance id>`:

- ``POST /events``: signed stock-change events from the Medusa subscriber;
- ``POST /store/restock-subscriptions``: the v2 guide's sign-up route;
- ``POST /restock-notifications/variants/{variant_id}``: the v1 plugin's sign-up route.

The sign-up routes answer in Medusa's shapes (`{type, message}` errors with 400, as Medusa's
error handler does for INVALID_DATA / NOT_ALLOWED) and add restock's own
``{"error": {code, message, field}}`` next to it, so either kind of client understands them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from restock_core import (
    AdapterError,
    InStockError,
    PluginHost,
    RateLimitedError,
    RestockError,
    StockUpdate,
    error_response,
    retry_after_header,
    utcnow,
)

from .events import EVENT_ID_HEADER, SignatureError, verify
from .orders import ORDER_EVENTS, handle_order_event

log = logging.getLogger("restock.medusa")

V2_IN_STOCK = "Variant isn't out of stock."
V1_IN_STOCK = "You cannot sign up for restock notifications on a product that is not sold out"
PUBLISHABLE_KEY_HEADER = "x-publishable-api-key"


def _medusa_error(
    medusa_type: str | None, message: str, code: str, field: str | None = None, status: int = 400
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    body: dict[str, Any] = {"message": message, "error": error}
    if medusa_type:
        body = {"type": medusa_type, **body}
    return JSONResponse(body, status_code=status)


async def _json_object(request: Request) -> Mapping[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, Mapping) else None


def _optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RestockError(f"{name} must be a string", field=name, code="invalid")
    return value.strip() or None


def build_router(adapter: Any, app: PluginHost) -> APIRouter:
    router = APIRouter()

    # ------------------------------------------------------------------ events

    def _process_event(event_id: str, data: Mapping[str, Any]) -> JSONResponse:
        if app.seen_event(adapter.id, f"event:{event_id}"):
            return JSONResponse({"status": "duplicate", "event_id": event_id})
        if data.get("name") in ORDER_EVENTS:  # revenue attribution (orders.py)
            try:
                outcome = handle_order_event(adapter, str(data["name"]), data)
            except AdapterError as exc:  # poll_orders() catches up
                log.warning("medusa event %s: reading the order failed: %s", event_id, exc)
                return JSONResponse(
                    {"status": "deferred", "event_id": event_id, "reason": str(exc)},
                    status_code=202,
                )
            return JSONResponse({**outcome, "event_id": event_id})
        variant_ids = list(dict.fromkeys(data.get("variant_ids") or []))
        item_ids = list(dict.fromkeys(data.get("inventory_item_ids") or []))
        try:
            if not variant_ids and item_ids:
                variant_ids = adapter.variants_of_inventory_items(item_ids)
            keys = app.pending_keys(adapter.id, variant_ids)
            if not keys:
                return JSONResponse(
                    {"status": "ignored", "event_id": event_id, "reason": "no pending sign-ups"}
                )
            found = app.read_availability(adapter.id, keys)
        except AdapterError as exc:
            # the reconciliation pass (poll_interval) catches up; the sender need not retry
            log.warning("medusa event %s: re-reading stock failed: %s", event_id, exc)
            return JSONResponse(
                {"status": "deferred", "event_id": event_id, "reason": str(exc)}, status_code=202
            )
        observed = utcnow()
        result = app.record_stock(
            adapter.id, [StockUpdate(k, found.get(k), observed) for k in keys if k in found]
        )
        return JSONResponse(
            {
                "status": "processed",
                "event_id": event_id,
                "keys": len(keys),
                "restocks_opened": list(result.restocks_opened),
            }
        )

    @router.post("/events", summary="Signed stock-change events from Medusa (restock-forwarder.ts)")
    async def receive_event(request: Request) -> Response:
        secret = adapter.options.event_secret
        if secret is None:
            return error_response(404, "not_configured", "events are not enabled: set event_secret")
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            verify(secret.value, raw, headers, tolerance=adapter.options.event_tolerance)
        except SignatureError as exc:
            return error_response(401, exc.code, exc.message)
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return error_response(400, "malformed", "the body is not JSON")
        if not isinstance(data, Mapping):
            return error_response(400, "malformed", "the body must be a JSON object")
        event_id = headers.get(EVENT_ID_HEADER) or data.get("id")
        if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > 200:
            return error_response(
                422, "invalid", "an event id is required (X-Restock-Event-Id or id)", "id"
            )
        for name in ("variant_ids", "inventory_item_ids"):
            value = data.get(name)
            if value is not None and (
                not isinstance(value, list)
                or len(value) > 1000
                or not all(isinstance(v, str) and v for v in value)
            ):
                return error_response(422, "invalid", f"{name} must be a list of ids", name)
        return await run_in_threadpool(_process_event, event_id.strip(), data)

    # ------------------------------------------------------------------ sign-up

    def _subscribe(
        request: Request, variant_id: str, email: str, scope: str, customer_id: str | None
    ) -> Any:
        """A shopper's sign-up: public limits, the before_subscribe hook, no content."""
        return app.subscribe_public(
            variant_id,
            context=app.public_context(request),
            email=email,
            scope=scope,
            source=adapter.id,
            customer_id=customer_id,
        )

    def _rate_limited(medusa_type: str | None, exc: RateLimitedError) -> JSONResponse:
        answer = _medusa_error(medusa_type, exc.message, exc.code, exc.field, status=429)
        answer.headers.update(retry_after_header(exc.retry_after))
        return answer

    @router.post(
        "/store/restock-subscriptions",
        status_code=201,
        summary="Medusa v2 guide: sign up for a restock notification",
    )
    async def v2_subscribe(request: Request) -> Response:
        data = await _json_object(request)
        if data is None:
            return _medusa_error(
                "invalid_data", "Invalid request: body must be a JSON object", "invalid"
            )
        try:
            variant_id = _optional_str(data, "variant_id")
            email = _optional_str(data, "email")
            channel = _optional_str(data, "sales_channel_id")
            customer_id = _optional_str(data, "customer_id")
        except RestockError as exc:
            return _medusa_error("invalid_data", exc.message, "invalid", exc.field)
        if not variant_id:
            return _medusa_error(
                "invalid_data",
                "Invalid request: Field 'variant_id' is required",
                "invalid",
                "variant_id",
            )
        if not email:
            return _medusa_error(
                "invalid_data",
                "Invalid request: Field 'email' is required (restock does not read customer "
                "sessions)",
                "invalid",
                "email",
            )
        if channel is None:
            channel = adapter.channel_for_publishable_key(
                request.headers.get(PUBLISHABLE_KEY_HEADER)
            )
        scope = adapter.scope_for_channel(channel)
        try:
            await run_in_threadpool(_subscribe, request, variant_id, email, scope, customer_id)
        except InStockError:
            return _medusa_error("invalid_data", V2_IN_STOCK, "in_stock", "variant_id")
        except RateLimitedError as exc:
            return _rate_limited("not_allowed", exc)
        except RestockError as exc:
            return _medusa_error("invalid_data", exc.message, exc.code, exc.field)
        # the guide's shape, from what the shopper sent only: a repeat sign-up answers the
        # same as a new one and nothing stored about the person is echoed
        return JSONResponse(
            {
                "restock_subscription": {
                    "variant_id": variant_id,
                    "sales_channel_id": adapter.channel_for_scope(scope),
                    "email": email,
                    "customer_id": customer_id,
                    "created_at": utcnow().isoformat(),
                }
            },
            status_code=201,
        )

    @router.post(
        "/restock-notifications/variants/{variant_id}",
        status_code=201,
        summary="Medusa v1 plugin: sign an email up for a variant",
    )
    async def v1_subscribe(variant_id: str, request: Request) -> Response:
        data = await _json_object(request)
        if data is None:
            return _medusa_error(None, "body must be a JSON object", "invalid")
        try:
            email = _optional_str(data, "email")
            channel = _optional_str(data, "sales_channel_id")
        except RestockError as exc:
            return _medusa_error(None, exc.message, "invalid", exc.field)
        if not email:
            return _medusa_error(None, "email is required", "invalid", "email")
        # v1: a publishable key scoped to one sales channel wins over the body
        key_channel = adapter.channel_for_publishable_key(
            request.headers.get(PUBLISHABLE_KEY_HEADER)
        )
        scope = adapter.scope_for_channel(key_channel or channel)
        try:
            await run_in_threadpool(_subscribe, request, variant_id, email, scope, None)
        except InStockError:
            return _medusa_error(None, V1_IN_STOCK, "in_stock", "variant_id")
        except RateLimitedError as exc:
            return _rate_limited(None, exc)
        except RestockError as exc:
            return _medusa_error(None, exc.message, exc.code, exc.field)
        return PlainTextResponse("Created", status_code=201)

    return router
