"""The hooks a restock plugin can implement. Each one is documented in docs/hooks.md;
a test fails if a hook is added here without a section there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .models import Conversion, Restock, SendResult, Subscription
    from .signup import SignUpContext, SignUpRequest, Veto

PROJECT = "restock"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: register(name, factory, options=None, description=None)
Register = Callable[..., None]


@hookspec
def register_providers(register: Register) -> None:
    """Hand notification provider factories to the core.

    Call ``register("name", factory, options=OptionsClass)`` once per provider. ``factory``
    is called with the validated options instance (or with no argument when ``options`` is
    None) and returns an object following :class:`restock_core.plugins.Provider`.
    """


@hookspec
def register_inventory_adapters(register: Register) -> None:
    """Hand inventory adapter factories to the core, like ``register_providers``.

    The factory returns an object following :class:`restock_core.plugins.InventoryAdapter`.
    """


@hookspec
def register_observers(register: Register) -> None:
    """Hand observer plugin factories to the core, like ``register_providers``: plugins
    chosen in plugins.toml with options (the built-in ``webhook``) that only watch.

    The factory returns a :class:`restock_core.ObserverPlugin`; its ``observers()`` are
    registered after ``bind``.
    """


@hookspec
def register_routes(register: Callable[[str, Any], None], app: Any) -> None:
    """Mount HTTP routes: call ``register(prefix, router)`` with a FastAPI ``APIRouter``.

    Configured provider and adapter instances mount theirs through their own ``routes()``
    method instead, under ``/<instance id>``.
    """


@hookspec(firstresult=True)
def before_subscribe(request: SignUpRequest, context: SignUpContext) -> Veto | str | None:
    """Veto a public sign-up before anything is stored (CAPTCHA, Turnstile, honeypot, your
    own rules). Return None to let it through, or a reason (a string, or a
    :class:`~restock_core.signup.Veto`) to refuse it: the first veto wins and the rest are
    not called. A refused sign-up answers 422 ``refused`` with the reason, or, for a
    ``Veto(..., silent=True)``, the ordinary public answer while nothing is stored (so a bot
    learns nothing). Called for public callers only (no key); `context` carries the client
    IP, user agent, consent and the form fields the core does not know (``context.form``).
    """


@hookspec
def subscription_created(subscription: Subscription) -> None:
    """Observer: a new pending subscription was stored (not called for a repeat sign-up)."""


@hookspec
def restocked(restock: Restock, subscriptions: Sequence[Subscription]) -> None:
    """Observer: subscribers were released for a restock.

    Called after the release is committed, once per released batch (at most
    ``release_batch_size`` subscriptions each), so a restock with a million subscribers
    never builds one huge list. ``restock.released`` counts everyone released so far.
    """


@hookspec
def notification_sent(subscription: Subscription, result: SendResult) -> None:
    """Observer: a provider accepted the message for this subscription."""


@hookspec
def notification_failed(subscription: Subscription, result: SendResult) -> None:
    """Observer: the message failed for good (invalid address, opted out, out of attempts)."""


@hookspec
def conversion_recorded(conversion: Conversion) -> None:
    """Observer: a notified subscriber bought the variant within the attribution window
    (called once per subscription, after the conversion is stored)."""
