"""The merchant dashboard at `/admin`: server-rendered Jinja2 pages behind a login with the
admin key (signed HttpOnly SameSite=Strict cookie), a CSRF token on every form, no page
reachable without a session. Its queries live in the store (`restock_core/store/dashboard.py`)."""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlencode

import attrs
import jinja2
import markupsafe
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..app import MAX_ROW_ID
from ..clock import utcnow
from ..contacts import normalize_email, normalize_phone
from ..errors import RestockError
from ..models import Channel
from ..preview import one_off_delivery_id, preview_message, sms_info
from ..store.dashboard import SORTS, SubscriberRow
from . import charts
from .auth import LOGIN_COOKIE, MAX_AGE, SESSION_COOKIE, Sessions

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("restock.dashboard")
HERE = Path(__file__).parent
STATUSES = ("pending", "notified", "failed", "unsubscribed")
MAX_FORM_BYTES = 16_384
E164 = re.compile(r"\+[0-9]{6,15}")  # a phone number is data, not a formula
NAV = (
    ("demand", "Demand"),
    ("restocks", "Restocks"),
    ("revenue", "Revenue"),
    ("deliverability", "Deliverability"),
    ("charts", "Charts"),
    ("messages", "Messages"),
)


class LoginThrottle:
    """At most `limit` failed sign-ins per client address per `window` seconds; after that
    every attempt (right key or not) is refused until the window has passed."""

    def __init__(self, limit: int = 5, window: float = 300.0):
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window]
            self._failures[client] = recent
            return len(recent) >= self.limit

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 10_000:
                self._failures.clear()
            self._failures.setdefault(client, []).append(time.monotonic())


class LoginRequired(Exception):
    """Raised by pages when there is no valid session: answered with a redirect to login."""

    def __init__(self, next_path: str):
        self.next_path = next_path


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("restock_core", "dashboard/templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )

    def when(value: datetime | None) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else ""

    env.filters["when"] = when
    env.globals["NAV"] = NAV
    env.globals["STATUSES"] = STATUSES
    return env


def _csv_cell(value: Any) -> str:
    """Spreadsheet-safe: a cell starting with = + - @ (or tab/CR) is not read as a formula."""
    text = "" if value is None else value.isoformat() if isinstance(value, datetime) else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not E164.fullmatch(text):
        return "'" + text
    return text


def _csv(header: list[str], rows: Iterable[list[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for n, row in enumerate(rows):
        writer.writerow([_csv_cell(v) for v in row])
        if n % 500 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _csv_download(
    filename: str, columns: Iterable[tuple[str, str]], records: Iterable[Any]
) -> StreamingResponse:
    """A streamed, spreadsheet-safe CSV of `records`: one column per (header, attribute)."""
    header = [name for name, _ in columns]
    getters = [attrgetter(attribute) for _, attribute in columns]
    rows = ([get(record) for get in getters] for record in records)
    return StreamingResponse(
        _csv(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


#: (CSV header, row attribute)
DEMAND_COLUMNS = (
    ("source", "source"),
    ("variant_id", "variant_id"),
    ("scope", "scope"),
    ("product_title", "product_title"),
    ("variant_title", "variant_title"),
    ("pending", "pending"),
    ("oldest_signup", "oldest"),
    ("signups_last_7_days", "last_week"),
)
SUBSCRIBER_COLUMNS = (
    ("id", "id"),
    ("source", "source"),
    ("variant_id", "variant_id"),
    ("scope", "scope"),
    ("channel", "channel"),
    ("contact", "contact"),
    ("status", "status"),
    ("subscribed_at", "created_at"),
    ("notified_at", "notified_at"),
    ("failure_reason", "failed_reason"),
    ("locale", "locale"),
)


@attrs.frozen
class SubscriberQuery:
    """The subscriber search as typed (the page and its CSV take the same query string)."""

    source: str = ""
    variant: str = ""
    scope: str = ""
    status: str = ""
    contact: str = ""

    @property
    def filters(self) -> dict[str, Any]:
        """The store's filters: unknown status ignored, the contact normalised as stored."""
        return {
            "source": self.source or None,
            "variant_id": self.variant or None,
            "scope": self.scope or None,
            "status": self.status if self.status in STATUSES else None,
            "contact": _contact(self.contact) if self.contact else None,
        }

    @property
    def invalid_contact(self) -> bool:
        return bool(self.contact.strip()) and _contact(self.contact) is None

    @property
    def chosen(self) -> bool:
        """A variant or a contact: the list is never the whole table."""
        filters = self.filters
        return bool(filters["variant_id"] or filters["contact"])

    def query_string(self) -> str:
        return urlencode({k: v for k, v in attrs.asdict(self).items() if v})


def subscriber_query(
    source: str = "", variant: str = "", scope: str = "", status: str = "", contact: str = ""
) -> SubscriberQuery:
    return SubscriberQuery(source, variant, scope, status, contact)


SubscriberQueryDep = Annotated[SubscriberQuery, Depends(subscriber_query)]


def _contact(text: str) -> str | None:
    """A search box entry as stored: normalised email or E.164 phone; None if neither."""
    text = text.strip()
    if not text:
        return None
    try:
        return normalize_email(text) if "@" in text else normalize_phone(text)
    except RestockError:
        return None


def build_router(app: App) -> APIRouter:
    router = APIRouter(prefix="/admin", include_in_schema=False)
    env = _env()
    sessions = Sessions(app)
    throttle = LoginThrottle()
    secure = app.settings.public_url.startswith("https://")
    queries = app.store.dashboard
    css = (HERE / "static" / "dashboard.css").read_bytes()

    def session_of(request: Request) -> str | None:
        return sessions.verify(request.cookies.get(SESSION_COOKIE))

    def require(request: Request) -> str:
        session_id = session_of(request)
        if session_id is None:
            raise LoginRequired(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
        return session_id

    def page(
        request: Request, name: str, session_id: str | None, http_status: int = 200, **data: Any
    ) -> HTMLResponse:
        data.setdefault("flash", request.query_params.get("flash"))
        body = env.get_template(name).render(
            csrf=sessions.csrf(session_id) if session_id else "",
            current=name.removesuffix(".html"),
            logged_in=session_id is not None,
            **data,
        )
        return HTMLResponse(
            body,
            status_code=http_status,
            headers={
                "Cache-Control": "no-store",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "same-origin",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' data: https:; "
                "style-src 'self' 'unsafe-inline'; frame-src 'self' data: about:; "
                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            },
        )

    async def form_of(request: Request) -> dict[str, str]:
        raw = await request.body()
        if len(raw) > MAX_FORM_BYTES:
            return {}
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    async def posted(request: Request) -> tuple[str, dict[str, str]]:
        """A form post from a logged-in page with its CSRF token, else refused."""
        session_id = require(request)
        form = await form_of(request)
        if not sessions.check_csrf(session_id, form.get("csrf")):
            raise _Forbidden()
        return session_id, form

    def back(path: str, flash: str | None = None, **params: str) -> RedirectResponse:
        if flash:
            params["flash"] = flash
        query = urlencode({k: v for k, v in params.items() if v})
        return RedirectResponse(f"/admin/{path}" + (f"?{query}" if query else ""), status_code=303)

    # ------------------------------------------------------------------ login

    @router.get("/login")
    def login_page(request: Request, next: str = "/admin/demand") -> HTMLResponse:
        nonce = sessions.new_login_nonce()
        response = page(
            request,
            "login.html",
            None,
            enabled=sessions.enabled,
            login_csrf=sessions.login_csrf(nonce) if sessions.enabled else "",
            next=next if next.startswith("/admin") else "/admin/demand",
            error=None,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=1800,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/admin",
        )
        return response

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        nonce = request.cookies.get(LOGIN_COOKIE)
        target = form.get("next", "")
        target = (
            target
            if target.startswith("/admin/") and not target.startswith("/admin//")
            else "/admin/demand"
        )

        def again(error: str, status: int) -> HTMLResponse:
            fresh = sessions.new_login_nonce()
            response = page(
                request,
                "login.html",
                None,
                http_status=status,
                enabled=sessions.enabled,
                login_csrf=sessions.login_csrf(fresh) if sessions.enabled else "",
                next=target,
                error=error,
            )
            response.set_cookie(
                LOGIN_COOKIE,
                fresh,
                max_age=1800,
                httponly=True,
                samesite="strict",
                secure=secure,
                path="/admin",
            )
            return response

        if not sessions.enabled:
            return again("The dashboard is disabled: set admin_api_key in [restock].", 403)
        import hmac as _hmac

        token = form.get("csrf", "")
        if not nonce or not _hmac.compare_digest(
            token.encode(), sessions.login_csrf(nonce).encode()
        ):
            return again("The form expired. Please sign in again.", 403)
        client = request.client.host if request.client else "?"
        if throttle.blocked(client):
            return again("Too many failed sign-ins. Wait five minutes and try again.", 429)
        if not sessions.check_key(form.get("key", "")):
            throttle.failed(client)
            log.warning("dashboard: failed login from %s", client)
            return again("That is not the admin key.", 401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            sessions.issue(),
            max_age=MAX_AGE,
            httponly=True,
            samesite="strict",
            secure=secure,
            path="/admin",
        )
        response.delete_cookie(LOGIN_COOKIE, path="/admin")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        await posted(request)
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, path="/admin", httponly=True, samesite="strict", secure=secure
        )
        return response

    @router.get("/static/dashboard.css")
    def stylesheet() -> Response:
        return Response(
            css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"}
        )

    @router.get("")
    @router.get("/")
    def home(request: Request) -> Response:
        require(request)
        return back("demand")

    # ------------------------------------------------------------------ demand

    @router.get("/demand")
    def demand(
        request: Request, q: str = "", sort: str = "pending", after: str = ""
    ) -> HTMLResponse:
        session_id = require(request)
        q = q.strip()[:200]
        result = queries.demand(q=q or None, sort=sort, cursor=after or None)
        return page(
            request,
            "demand.html",
            session_id,
            rows=result.rows,
            next_cursor=result.next_cursor,
            q=q,
            sort=sort if sort in SORTS else "pending",
            sorts=SORTS,
            after=after,
        )

    @router.get("/demand.csv")
    def demand_csv(request: Request, q: str = "", sort: str = "pending") -> StreamingResponse:
        require(request)
        records = queries.demand_all(q=q.strip()[:200] or None, sort=sort)
        return _csv_download("restock-demand.csv", DEMAND_COLUMNS, records)

    # ------------------------------------------------------------------ subscribers

    @router.get("/subscribers")
    def subscribers(
        request: Request,
        query: SubscriberQueryDep,
        after: int | None = Query(None, ge=0, le=MAX_ROW_ID),
    ) -> HTMLResponse:
        session_id = require(request)
        rows: tuple[SubscriberRow, ...] = ()
        next_after = None
        if not query.invalid_contact and query.chosen:
            rows, next_after = queries.subscribers(
                after=after if after and after > 0 else None, **query.filters
            )
        return page(
            request,
            "subscribers.html",
            session_id,
            rows=rows,
            next_after=next_after,
            source=query.source,
            variant=query.variant,
            scope=query.scope,
            status=query.status,
            contact=query.contact,
            invalid_contact=query.invalid_contact,
            query=query.query_string(),
        )

    @router.get("/subscribers.csv")
    def subscribers_csv(request: Request, query: SubscriberQueryDep) -> Response:
        require(request)
        if not query.chosen:
            return back("subscribers", "Choose a variant or a contact first.")
        records = queries.subscribers_all(**query.filters)
        return _csv_download("restock-subscribers.csv", SUBSCRIBER_COLUMNS, records)

    # ------------------------------------------------------------------ restocks

    @router.get("/restocks")
    def restocks(
        request: Request, before: int | None = Query(None, ge=0, le=MAX_ROW_ID)
    ) -> HTMLResponse:
        session_id = require(request)
        rows, next_before = queries.restocks(before=before if before and before > 0 else None)
        live = any(
            r.status == "open" or r.deliveries.get("queued") or r.deliveries.get("sending")
            for r in rows
        )
        return page(
            request, "restocks.html", session_id, rows=rows, next_before=next_before, live=live
        )

    # ------------------------------------------------------------------ revenue

    @router.get("/revenue")
    def revenue(request: Request, days: int = Query(30, ge=1, le=3650)) -> HTMLResponse:
        """Revenue attribution (docs/attribution.md): subscribers notified in the last
        `days` days, how many bought, revenue per currency, the top variants."""
        session_id = require(request)
        since = utcnow() - timedelta(days=days)
        report = app.store.orders.report(start=since, end=None, variant_id=None, variant_limit=50)
        notified = report["notified"]
        return page(
            request,
            "revenue.html",
            session_id,
            days=days,
            report=report,
            rate=(report["converted"] / notified) if notified else 0.0,
            window=app.settings.attribution_window,
        )

    # ------------------------------------------------------------------ deliverability

    @router.get("/deliverability")
    def deliverability(request: Request, contact: str = "") -> HTMLResponse:
        session_id = require(request)
        wanted = _contact(contact) if contact.strip() else None
        health = queries.provider_health()
        providers = [
            {
                "id": pid,
                "channels": ", ".join(sorted(str(c) for c in inst.obj.channels)),
                "health": health.get(pid),
            }
            for pid, inst in app.providers.items()
        ]
        return page(
            request,
            "deliverability.html",
            session_id,
            failures=queries.failures(),
            suppressions=queries.suppressions(contact=wanted)
            if not contact.strip() or wanted
            else (),
            providers=providers,
            contact=contact,
        )

    @router.post("/suppressions/lift")
    async def lift(request: Request) -> Response:
        _, form = await posted(request)
        channel, contact = form.get("channel", ""), form.get("contact", "")
        if channel not in ("email", "sms") or not contact:
            return back("deliverability", "Nothing to lift: channel and contact are required.")
        done = await run_in_threadpool(app.lift_suppression, Channel(channel), contact)
        log.info("dashboard: suppression of %s (%s) lifted: %s", contact, channel, done)
        return back(
            "deliverability",
            f"Lifted the suppression of {contact}." if done else f"{contact} was not suppressed.",
        )

    @router.post("/deliveries/requeue")
    async def requeue(request: Request) -> Response:
        _, form = await posted(request)
        provider = form.get("provider") or None

        def run() -> int:
            return len(queries.requeue_failed(provider=provider))

        count = await run_in_threadpool(run)
        log.info("dashboard: %s failed deliveries requeued (provider %s)", count, provider or "any")
        return back("deliverability", f"Requeued {count} failed deliveries.")

    # ------------------------------------------------------------------ charts

    @router.get("/charts")
    def chart_page(request: Request) -> HTMLResponse:
        session_id = require(request)
        signups = queries.per_day("signups")
        sent = queries.per_day("sent")
        return page(
            request,
            "charts.html",
            session_id,
            signups=signups,
            sent=sent,
            signups_svg=markupsafe.Markup(charts.bars(signups, "Sign-ups per day")),
            sent_svg=markupsafe.Markup(charts.bars(sent, "Notifications sent per day")),
        )

    # ------------------------------------------------------------------ messages

    def render_preview(
        variant: str,
        channel: str,
        locale: str,
        scope: str,
        source: str,
        to: str | None = None,
        delivery_id: int = 0,
    ) -> Any:
        instance = app.adapter_instance(source or None)
        titles = queries.variant_snapshot(instance.id, variant, scope or "default")
        return preview_message(
            app,
            variant,
            channel=channel,
            locale=locale.strip() or None,
            scope=scope or "default",
            source=instance.id,
            to=to,
            delivery_id=delivery_id,
            titles=titles,
        )

    @router.get("/messages")
    def messages(
        request: Request,
        variant: str = "",
        channel: str = "email",
        locale: str = "",
        scope: str = "default",
        source: str = "",
    ) -> HTMLResponse:
        session_id = require(request)
        message = error = sms = None
        chosen = None
        if variant:
            try:
                message = render_preview(variant, channel, locale, scope, source)
                prefix = "restock_sms" if message.channel == Channel.SMS else "restock_email"
                chosen = [
                    n for n in app.renderer.templates(message.locale).names if n.startswith(prefix)
                ]
                if message.channel == Channel.SMS:
                    sms = sms_info(message.text)
            except RestockError as exc:
                error = exc.message
        return page(
            request,
            "messages.html",
            session_id,
            variant=variant,
            channel=channel,
            locale=locale,
            scope=scope,
            source=source,
            sources=list(app.adapters),
            message=message,
            error=error,
            sms=sms,
            chosen=chosen,
            channels=[str(c) for c in app.routing],
        )

    @router.post("/messages/test")
    async def send_test(request: Request) -> Response:
        _, form = await posted(request)
        variant, channel = form.get("variant", ""), form.get("channel", "email")
        locale, scope, source = (
            form.get("locale", ""),
            form.get("scope", "default"),
            form.get("source", ""),
        )
        params = {
            "variant": variant,
            "channel": channel,
            "locale": locale,
            "scope": scope,
            "source": source,
        }
        to = _contact(form.get("to", ""))
        if to is None or (channel == "email") != ("@" in to):
            return back(
                "messages",
                "Give your own email address (or phone number for SMS) to send a test to.",
                **params,
            )
        provider = app.routing.get(Channel(channel)) if channel in ("email", "sms") else None
        if provider is None:
            return back("messages", f"No provider sends {channel} messages.", **params)

        def send() -> str:
            message = render_preview(
                variant, channel, locale, scope, source, to=to, delivery_id=one_off_delivery_id()
            )
            try:
                results = list(provider.obj.send([message]))
            except Exception as exc:  # a provider outage is an answer, not a 500
                return f"The test message was not sent: {type(exc).__name__}: {exc}"
            result = results[0] if results else None
            if result is None:
                return "The provider returned no result."
            if result.outcome == "sent":
                return f"Test message sent to {to} through {provider.id}."
            return f"The test message was not sent ({result.outcome}): {result.reason}"

        try:
            note = await run_in_threadpool(send)
        except RestockError as exc:
            note = exc.message
        log.info("dashboard: test message for %s to %s: %s", variant, to, note)
        return back("messages", note, **params)

    return router


class _Forbidden(Exception):
    pass


def mount(api: FastAPI, app: App) -> None:
    """Add the dashboard to the HTTP API."""
    api.include_router(build_router(app))

    @api.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(
            "/admin/login?" + urlencode({"next": exc.next_path}), status_code=303
        )

    @api.exception_handler(_Forbidden)
    async def forbidden(request: Request, exc: _Forbidden) -> Response:
        return HTMLResponse(
            "<!doctype html><title>Refused</title><p>This form was not sent from the dashboard "
            "(missing or wrong CSRF token). Go back, reload the page and try again.</p>",
            status_code=403,
        )


__all__ = ["build_router", "mount"]
