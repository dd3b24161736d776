/*! restock "Notify me" widget. No dependencies. Docs: docs/widget.md
 * Embed: <div data-restock-variant="ID" data-restock-scope="default"></div>
 *        <script src="https://RESTOCK/widget.js" defer></script>
 * Config (optional, before the script): window.restockWidget = {base, locale, consent,
 *   strings: {key: text}, source}. Per element: data-restock-locale, data-restock-consent,
 *   data-restock-source, data-restock-base, data-restock-text-<key> (e.g. -text-title),
 *   data-restock-sold-out="true" (page knows; skip the check), data-restock-subscribe-url.
 * Variant pickers: change data-restock-variant, or dispatch
 *   new CustomEvent("restock:variant", {detail: {variant: "ID", scope?}, bubbles: true})
 *   on a widget element (that one) or on document (all of them). */
(function () {
  "use strict";
  if (window.__restockWidgetLoaded) return;
  window.__restockWidgetLoaded = true;

  var STRINGS = {
    en: {
      title: "Notify me when available",
      email: "Email",
      phone: "Mobile number (optional)",
      consent: "Send me one message when this item is back in stock.",
      submit: "Notify me",
      sending: "Sending…",
      done: "Thanks! We'll email you when it's back.",
      doneSms: "Thanks! We'll text you when it's back.",
      confirm: "Almost done: check your inbox to confirm.",
      invalidEmail: "Enter a valid email address, like name@example.com.",
      invalidPhone: "Enter a valid mobile number with country code, like +44 7911 123456.",
      needConsent: "Tick the box so we may send you the message.",
      rateLimited: "Too many attempts. Please wait a minute and try again.",
      failed: "Something went wrong. Please try again.",
      honeypot: "Leave this field empty"
    },
    de: {
      title: "Benachrichtigen, wenn verfügbar",
      email: "E-Mail",
      phone: "Handynummer (optional)",
      consent: "Schickt mir eine Nachricht, sobald der Artikel wieder da ist.",
      submit: "Benachrichtigen",
      sending: "Wird gesendet…",
      done: "Danke! Wir schreiben Ihnen eine E-Mail, sobald er wieder da ist.",
      doneSms: "Danke! Wir schicken Ihnen eine SMS, sobald er wieder da ist.",
      confirm: "Fast geschafft: Bitte bestätigen Sie die E-Mail in Ihrem Postfach.",
      invalidEmail: "Bitte geben Sie eine gültige E-Mail-Adresse ein, z. B. name@example.com.",
      invalidPhone: "Bitte geben Sie eine gültige Handynummer mit Ländervorwahl ein, z. B. +49 151 23456789.",
      needConsent: "Bitte setzen Sie das Häkchen, damit wir Ihnen schreiben dürfen.",
      rateLimited: "Zu viele Versuche. Bitte warten Sie eine Minute und versuchen Sie es erneut.",
      failed: "Etwas ist schiefgelaufen. Bitte versuchen Sie es erneut.",
      honeypot: "Dieses Feld leer lassen"
    }
  };

  var CSS =
    ".restock-widget{font:inherit;font-family:var(--restock-font,inherit);color:var(--restock-color,inherit);" +
    "margin:var(--restock-margin,1em 0);padding:var(--restock-padding,1em);border:var(--restock-border,1px solid #ccc);" +
    "border-radius:var(--restock-radius,6px);background:var(--restock-background,transparent);position:relative}" +
    ".restock-widget[hidden]{display:none}" +
    ".restock-widget .restock-title{font-weight:600;margin:0 0 .5em}" +
    ".restock-widget label{display:block;margin:.5em 0 .25em}" +
    ".restock-widget input[type=email],.restock-widget input[type=tel]{box-sizing:border-box;width:100%;" +
    "padding:.5em;font:inherit;border:var(--restock-input-border,1px solid #888);border-radius:var(--restock-radius,6px)}" +
    ".restock-widget .restock-consent{display:flex;gap:.5em;align-items:flex-start}" +
    ".restock-widget .restock-consent input{margin-top:.25em}" +
    ".restock-widget button{margin-top:.75em;padding:.6em 1.2em;font:inherit;cursor:pointer;border:0;" +
    "border-radius:var(--restock-radius,6px);background:var(--restock-accent,#111);color:var(--restock-accent-text,#fff)}" +
    ".restock-widget button[disabled]{opacity:.6;cursor:progress}" +
    ".restock-widget :focus-visible{outline:var(--restock-focus,2px solid #1a73e8);outline-offset:2px}" +
    ".restock-widget .restock-error{color:var(--restock-error,#b00020);margin:.25em 0 0}" +
    ".restock-widget .restock-error:empty{display:none}" +
    ".restock-widget .restock-status{margin:.5em 0 0}" +
    ".restock-widget .restock-status:empty{margin:0}" +
    ".restock-widget .restock-hp{position:absolute!important;left:-10000px;width:1px;height:1px;overflow:hidden}";

  var cfg = window.restockWidget || {};
  var current = document.currentScript;
  var scriptBase = current && current.src ? current.src.replace(/\/widget\.js(\?.*)?$/, "") : "";
  var seq = 0;
  var states = typeof WeakMap === "function" ? new WeakMap() : null;

  function injectStyle() {
    if (document.getElementById("restock-widget-style")) return;
    var style = document.createElement("style");
    style.id = "restock-widget-style";
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  function pickLocale(el) {
    var tag = el.getAttribute("data-restock-locale") || cfg.locale || document.documentElement.lang || "en";
    return String(tag);
  }

  function strings(el, locale) {
    var lang = locale.toLowerCase().split(/[-_]/)[0];
    var base = STRINGS[lang] || STRINGS.en;
    var out = {};
    var k;
    for (k in STRINGS.en) out[k] = base[k] || STRINGS.en[k];
    var custom = (cfg.strings && (cfg.strings[locale] || cfg.strings[lang])) || cfg.strings || {};
    for (k in out) if (typeof custom[k] === "string") out[k] = custom[k];
    if (typeof cfg.consent === "string") out.consent = cfg.consent;
    var attr = el.getAttribute("data-restock-consent");
    if (attr) out.consent = attr;
    for (k in out) {
      var v = el.getAttribute("data-restock-text-" + k.replace(/[A-Z]/g, function (c) { return "-" + c.toLowerCase(); }));
      if (v) out[k] = v;
    }
    return out;
  }

  function baseUrl(el) {
    return (el.getAttribute("data-restock-base") || cfg.base || scriptBase || "").replace(/\/$/, "");
  }

  // Across origins the JSON goes as text/plain: a CORS "simple" request, so no OPTIONS
  // preflight first; restock reads it as JSON and itself refuses one whose Origin is not in
  // cors_origins. To the page's own origin (Shopify's app proxy) it stays application/json:
  // no preflight there anyway, and that route reads JSON by its type. (docs/widget.md)
  function bodyType(url) {
    var same = true;
    try {
      same = new URL(url, location.href).origin === location.origin;
    } catch (e) { /* no URL(): JSON, which a preflight lets through as before */ }
    return same ? "application/json" : "text/plain;charset=UTF-8";
  }

  function make(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var k in attrs) if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
    if (text) node.textContent = text;
    return node;
  }

  function state(el) {
    var s = states ? states.get(el) : el.__restock;
    if (!s) {
      s = { token: 0, variant: null };
      if (states) states.set(el, s);
      else el.__restock = s;
    }
    return s;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function update(el) {
    var s = state(el);
    var variant = (el.getAttribute("data-restock-variant") || "").trim();
    var scope = (el.getAttribute("data-restock-scope") || "default").trim() || "default";
    var key = variant + "\u0000" + scope;
    if (key === s.variant) return;
    s.variant = key;
    var token = ++s.token;
    clear(el);
    if (!variant) return;
    var source = el.getAttribute("data-restock-source") || cfg.source || "";
    if (el.getAttribute("data-restock-sold-out") === "true") {
      // the page rendered the stock state itself (Liquid `available`, Magento isSaleable)
      var listed = (el.getAttribute("data-restock-channels") || "email").split(/[ ,]+/);
      render(el, variant, scope, source, listed);
      return;
    }
    var url = baseUrl(el) + "/widget/availability?variant=" + encodeURIComponent(variant) +
      "&scope=" + encodeURIComponent(scope) + (source ? "&source=" + encodeURIComponent(source) : "");
    fetch(url, { credentials: "omit" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (token !== s.token || !data || !data.sold_out) return;
        render(el, variant, scope, source, data.channels || ["email"]);
      })
      .catch(function () { /* nothing renders: no layout shift, no noise */ });
  }

  function render(el, variant, scope, source, channels) {
    injectStyle();
    var locale = pickLocale(el);
    var t = strings(el, locale);
    var id = "restock-" + ++seq;
    var email = channels.indexOf("email") >= 0;
    var sms = channels.indexOf("sms") >= 0;
    var form = make("form", { "class": "restock-widget", novalidate: "", "aria-labelledby": id + "-title", lang: locale });
    form.appendChild(make("p", { "class": "restock-title", id: id + "-title" }, t.title));
    var fields = [];
    function field(kind, label, autocomplete) {
      form.appendChild(make("label", { "for": id + "-" + kind }, label));
      var input = make("input", {
        type: kind === "email" ? "email" : "tel", id: id + "-" + kind, name: kind,
        autocomplete: autocomplete, inputmode: kind === "email" ? "email" : "tel",
        "aria-describedby": id + "-" + kind + "-error", maxlength: kind === "email" ? "320" : "40"
      });
      if (kind === "email" || !email) input.required = true;
      form.appendChild(input);
      var error = make("p", { "class": "restock-error", id: id + "-" + kind + "-error" });
      form.appendChild(error);
      fields.push({ kind: kind, input: input, error: error });
      return input;
    }
    var emailInput = email ? field("email", t.email, "email") : null;
    var phoneInput = sms ? field("phone", email ? t.phone : t.phone.replace(/\s*\(.*\)\s*$/, ""), "tel") : null;
    var hp = make("div", { "class": "restock-hp", "aria-hidden": "true" });
    hp.appendChild(make("label", { "for": id + "-hp" }, t.honeypot));
    var hpInput = make("input", { type: "text", id: id + "-hp", name: "website", tabindex: "-1", autocomplete: "off" });
    hp.appendChild(hpInput);
    form.appendChild(hp);
    var consentWrap = make("div", { "class": "restock-consent" });
    var consent = make("input", { type: "checkbox", id: id + "-consent", name: "consent", required: "", "aria-describedby": id + "-consent-error" });
    consentWrap.appendChild(consent);
    consentWrap.appendChild(make("label", { "for": id + "-consent" }, t.consent));
    form.appendChild(consentWrap);
    var consentError = make("p", { "class": "restock-error", id: id + "-consent-error" });
    form.appendChild(consentError);
    var button = make("button", { type: "submit" }, t.submit);
    form.appendChild(button);
    // the live region is in the page, empty, before anything is announced
    var status = make("p", { "class": "restock-status", role: "status" });
    form.appendChild(status);
    el.appendChild(form);

    function setError(target, errorNode, message) {
      errorNode.textContent = message || "";
      if (target) {
        if (message) target.setAttribute("aria-invalid", "true");
        else target.removeAttribute("aria-invalid");
      }
    }

    function resetErrors() {
      for (var i = 0; i < fields.length; i++) setError(fields[i].input, fields[i].error, "");
      setError(consent, consentError, "");
      status.textContent = "";
    }

    function fail(kind, message) {
      var f = null;
      for (var i = 0; i < fields.length; i++) if (fields[i].kind === kind) f = fields[i];
      if (kind === "consent") {
        setError(consent, consentError, message);
        consent.focus();
      } else if (f) {
        setError(f.input, f.error, message);
        f.input.focus();
      } else {
        status.textContent = message;
      }
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled) return;
      resetErrors();
      var emailValue = emailInput ? emailInput.value.trim() : "";
      var phoneValue = phoneInput ? phoneInput.value.trim() : "";
      if (emailInput && (emailValue || !phoneValue) && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(emailValue)) {
        return fail("email", t.invalidEmail);
      }
      if (phoneInput && (phoneValue || !emailInput) && !/^\+?[0-9 ()./-]{6,}$/.test(phoneValue)) {
        return fail("phone", t.invalidPhone);
      }
      if (!consent.checked) return fail("consent", t.needConsent);
      var body = { variant_id: variant, scope: scope, consent: true, locale: locale };
      if (source) body.source = source;
      if (emailValue) body.email = emailValue;
      else if (phoneValue) body.phone = phoneValue;
      if (hpInput.value) body.hp = hpInput.value;
      button.disabled = true;
      button.textContent = t.sending;
      // data-restock-subscribe-url: another sign-up route taking the same JSON (Shopify's app proxy)
      var target = el.getAttribute("data-restock-subscribe-url") || baseUrl(el) + "/widget/subscriptions";
      fetch(target, {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": bodyType(target) },
        body: JSON.stringify(body)
      })
        .then(function (r) {
          return r.json().then(function (data) { return { code: r.status, data: data }; }, function () {
            return { code: r.status, data: {} };
          });
        })
        .then(function (res) {
          button.disabled = false;
          button.textContent = t.submit;
          var err = (res.data && res.data.error) || {};
          if (res.code === 200 || res.code === 201 || res.code === 202) {
            for (var i = form.children.length - 1; i >= 0; i--) {
              if (form.children[i] !== status && form.children[i].className !== "restock-title") {
                form.children[i].hidden = true;
              }
            }
            status.textContent = res.data && res.data.confirm ? t.confirm : res.data && res.data.channel === "sms" ? t.doneSms : t.done;
            el.dispatchEvent(new CustomEvent("restock:subscribed", { bubbles: true, detail: { variant: variant, scope: scope } }));
          } else if (res.code === 409) {
            clear(el); // in stock after all: the buy button is the answer
          } else if (res.code === 429) {
            status.textContent = t.rateLimited;
          } else if (err.field === "consent") {
            fail("consent", t.needConsent);
          } else if (err.field === "phone" || (err.field === "channel" && !emailValue)) {
            fail("phone", t.invalidPhone);
          } else if (res.code === 422 && (err.field === "email" || err.field === "channel")) {
            fail("email", t.invalidEmail);
          } else {
            status.textContent = t.failed;
          }
        })
        .catch(function () {
          button.disabled = false;
          button.textContent = t.submit;
          status.textContent = t.failed;
        });
    });
  }

  var observer = typeof MutationObserver === "function" ? new MutationObserver(function (records) {
    for (var i = 0; i < records.length; i++) {
      var r = records[i];
      if (r.type === "attributes") update(r.target);
      else for (var j = 0; j < r.addedNodes.length; j++) scanNode(r.addedNodes[j]);
    }
  }) : null;

  function attach(el) {
    if (state(el).attached) return;
    state(el).attached = true;
    if (observer) observer.observe(el, { attributes: true, attributeFilter: ["data-restock-variant", "data-restock-scope"] });
    update(el);
  }

  function scanNode(node) {
    if (node.nodeType !== 1) return;
    if (node.hasAttribute("data-restock-variant")) attach(node);
    var found = node.querySelectorAll("[data-restock-variant]");
    for (var i = 0; i < found.length; i++) attach(found[i]);
  }

  function scan() {
    scanNode(document.documentElement);
  }

  document.addEventListener("restock:variant", function (event) {
    var detail = event.detail || {};
    var target = event.target;
    var list = target && target.nodeType === 1 && target.hasAttribute("data-restock-variant")
      ? [target] : document.querySelectorAll("[data-restock-variant]");
    for (var i = 0; i < list.length; i++) {
      if (detail.scope) list[i].setAttribute("data-restock-scope", String(detail.scope));
      // null/empty variant (a combination that does not exist): show nothing
      list[i].setAttribute("data-restock-variant", detail.variant ? String(detail.variant) : "");
      attach(list[i]);
      update(list[i]);
    }
  });

  window.restockWidget = cfg;
  cfg.scan = scan;
  cfg.refresh = function (el) { state(el).variant = null; update(el); };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
  if (observer) observer.observe(document.documentElement, { childList: true, subtree: true });
})();
