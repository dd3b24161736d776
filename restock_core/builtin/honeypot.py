"""The built-in honeypot: a hidden form field (``hp``) people never see and so never fill,
and form-filling bots do. A filled honeypot gets the ordinary public answer while nothing is
stored, so the bot learns nothing. Written as any ``before_subscribe`` plugin would be; block
it with ``restock_core.plugins.PluginRegistry.pm.set_blocked("honeypot")`` if unwanted."""

from __future__ import annotations

from restock_core.hookspecs import hookimpl
from restock_core.signup import SignUpContext, SignUpRequest, Veto, nonblocking


@hookimpl
@nonblocking
def before_subscribe(request: SignUpRequest, context: SignUpContext) -> Veto | None:
    if context.honeypot:
        return Veto("honeypot field filled", silent=True)
    return None
