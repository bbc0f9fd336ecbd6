"""Secrets in one place: resolve ``env:NAME`` references, mask them, scrub them from free text.

- :func:`resolve_secret` reads ``env:NAME`` at use time. Inside a URL (a DSN, a Redis URL) the
  value is percent-encoded, inside a ``key=value`` DSN it is quoted, so any password survives.
- :func:`scrub` hides, in any text, the known secret values (raw, percent-encoded and base64, and the
  Basic form ``base64(user:password)`` of a URL's userinfo), the password of every URL's userinfo, secret
  query parameters (``password=``, ``token=``, ``api_key=``, …), ``password=…`` of key=value DSNs, HTTP
  credentials (``Authorization: …``, ``Cookie: …``, ``Basic <base64>``, ``Bearer <token>``) and session
  values (``session=…``, ``sid=…``) wherever they appear (a log line, a server's echo).
  :func:`mask_data` does the same through dicts and lists,
  and masks every value under a secret-named key.
- :func:`strip_control` removes control characters (ESC, NUL, …) from foreign text before it is
  printed or written into XML.

This module imports nothing of es-doctor's (a layer test holds it): every other part may use it.
Splitting a DSN (libpq's parse) is :func:`es_doctor.probes.postgres.split_dsn`.
"""

from __future__ import annotations

import base64
import os
import re
import unicodedata
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import BaseModel

MASK = "********"

ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
_FULL_ENV_REF = re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*")

#: keys whose value is a secret wherever they appear (audit records, step inputs, environments)
SECRET_KEY = re.compile(r"pass(word|wd)?|secret|token|api[_-]?key|webhook|dsn|authorization|credential|"
                        r"routing[_-]?key|private[_-]?key", re.I)
#: ``scheme://user:password@`` (the password may be empty or hold '@' in a sloppy URL: the last '@' before
#: the host ends it)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s?#]*):(?P<pw>[^/\s?#]*)@", re.I)
#: secret query parameters of a URL
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:password|passwd|pwd|pass|token|access_token|auth|api[_-]?key|apikey|key|secret|sig|"
    r"signature|routing_key)=)(?P<value>[^&#\s'\"]*)", re.I)
#: ``password=…`` of a key=value DSN (quoted or not)
_KV_PASSWORD = re.compile(r"(?P<key>\bpassword\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s'&]+)", re.I)
#: ``"password": "…"`` inside JSON text (a server body, a log line)
_JSON_SECRET = re.compile(
    r'(?P<key>"(?:password|passwd|pwd|secret|token|access_token|api[_-]?key|apikey|authorization|routing_key)"'
    r'\s*:\s*)"(?P<value>[^"\\]*(?:\\.[^"\\]*)*)"', re.I)
#: an HTTP credential after its scheme word (``Basic dXNlcjpQQVNT``, ``Bearer eyJ…``): masked when the value
#: looks like a credential (see :func:`_credential_like`), so "Basic authentication" stays prose
_AUTH_SCHEME = re.compile(r"(?P<key>\b(?:Basic|Bearer|Digest|Token|Negotiate|NTLM|ApiKey)\s+)"
                          r"(?P<value>[A-Za-z0-9+/._~-]{6,}=*)", re.I)
#: a credential header as a log line or a dict shows it (``Authorization: …``, ``'Cookie': '…'``,
#: ``X-Api-Key=…``): its whole value, to the end of the line or the closing quote
_AUTH_HEADER = re.compile(
    r"(?P<key>\b(?:Proxy-)?(?:Authorization|Cookie|Set-Cookie|X-Api-Key|Api-Key|X-Auth-Token|X-Access-Token)"
    r"['\"]?\s*[:=]\s*['\"]?)(?P<value>[^\r\n'\"]+)", re.I)
#: session cookies and tokens written as ``name=value`` in a log line (``session=…``, ``sid=…``)
_SESSION_VALUE = re.compile(
    r"(?P<key>\b(?:session|session_?id|sess|sid|jsessionid|phpsessid|connect\.sid|csrftoken|csrf_token|xsrf-token|"
    r"auth_token|access_token|refresh_token|id_token|remember_token)=)(?P<value>[^;&,\s'\"]+)", re.I)
_AUTH_HINT = re.compile(r"basic|bearer|digest|token|negotiate|ntlm|apikey|authoriz|cookie|api-key", re.I)
#: values that say whether a secret is there, never what it is (startup.go-env's "set"/"unset")
_NOT_SECRETS = frozenset({"", "set", "unset", MASK})
#: control characters kept in text: tab and newline
_KEEP = {"\t", "\n"}


# --------------------------------------------------------------------------- resolving


def env_names(value: str | None) -> list[str]:
    """The environment variables a value refers to (``env:NAME``)."""
    return ENV_REF.findall(value) if value else []


def missing_env(value: str | None) -> list[str]:
    """The ``env:NAME`` references of ``value`` whose variable is unset or empty."""
    return [name for name in env_names(value) if not os.environ.get(name)]


def _libpq_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resolve_secret(value: str | None) -> str | None:
    """Resolve ``env:NAME`` at use time: a whole value, or the parts of a URL/DSN that reference one.

    An unset variable resolves to None (whole value) or an empty string (part of a value): callers
    that need it report :func:`missing_env` first.
    """
    if value is None:
        return None
    if _FULL_ENV_REF.fullmatch(value):
        return os.environ.get(value[4:])
    if "env:" not in value:
        return value
    if "://" in value:  # a URL: the value goes in percent-encoded (an '@' or ':' in a password stays data)
        return ENV_REF.sub(lambda m: quote(os.environ.get(m.group(1), ""), safe=""), value)
    if "=" in value:  # a key=value DSN: ``password=env:PGPW`` → ``password='…'``
        return re.sub(r"(=\s*)env:([A-Za-z_][A-Za-z0-9_]*)",
                      lambda m: m.group(1) + _libpq_quote(os.environ.get(m.group(2), "")), value)
    return ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value)


# --------------------------------------------------------------------------- masking


def strip_control(text: str) -> str:
    """``text`` without control characters (ESC, NUL, CR, C1, …), tab and newline kept.

    Also drops what XML 1.0 cannot hold (lone surrogates, U+FFFE/U+FFFF).
    """
    if text.isprintable():
        return text
    return "".join(ch for ch in text if ch in _KEEP or not (
        unicodedata.category(ch) in ("Cc", "Cs") or ch in ("\ufffe", "\uffff")))


def _variants(secret: str) -> list[str]:
    """A secret and the forms it takes in text: percent-encoded, percent-decoded, base64 (standard and
    URL-safe, with and without padding: an Authorization header, a token echoed by a server)."""
    out = {secret, quote(secret, safe=""), quote(secret)}
    if "%" in secret:
        out.add(unquote(secret))
    for form in list(out):
        out.update(_base64_forms(form))
    return [s for s in out if s]


def _base64_forms(text: str) -> set[str]:
    """``text`` base64-encoded (standard, URL-safe, unpadded); none for a text under 6 characters, whose
    8-character encoding could match unrelated text."""
    if len(text) < 6:
        return set()
    raw = text.encode("utf-8")
    forms = {base64.b64encode(raw).decode("ascii"), base64.urlsafe_b64encode(raw).decode("ascii")}
    return forms | {f.rstrip("=") for f in forms if len(f.rstrip("=")) >= 4}


def basic_credentials(user: str, password: str) -> list[str]:
    """The forms HTTP Basic authentication gives ``user:password`` (what a server that echoes the
    Authorization header shows): base64 of the raw and of the percent-decoded pair."""
    pairs = {f"{user}:{password}", f"{unquote(user)}:{unquote(password)}"}
    return sorted({form for pair in pairs for form in _base64_forms(pair)})


def _credential_like(value: str) -> bool:
    """Whether a word after ``Basic``/``Bearer`` looks like a credential rather than prose: a digit or one
    of ``+/=._~-``, or lower and upper case mixed after its first letter."""
    body = value[1:]
    return (any(c.isdigit() or c in "+/=._~-" for c in value)
            or (any(c.islower() for c in body) and any(c.isupper() for c in body)))


@lru_cache(maxsize=64)
def _masked_forms(secrets: tuple[str, ...]) -> tuple[str, ...]:
    """Every form of these secrets that ``scrub`` masks, longest first (a run scrubs thousands of texts
    with the same few secrets: their forms are computed once)."""
    return tuple(sorted({v for s in secrets if s and len(s) >= 3 for v in _variants(s)}, key=len, reverse=True))


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with every known secret, URL password, secret query parameter and DSN password masked."""
    for secret in _masked_forms(tuple(secrets)):
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_USERINFO.sub(lambda m: m[0] if _is_ref(m["pw"]) else f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m[0] if _is_ref(m["value"]) else m["key"] + MASK, text)
        text = _KV_PASSWORD.sub(lambda m: m[0] if _is_ref(m["value"]) else m["key"] + MASK, text)
    if _AUTH_HINT.search(text):
        text = _AUTH_HEADER.sub(lambda m: m[0] if _is_ref(m["value"]) or m["value"].strip() == MASK
                                else m["key"] + MASK, text)
        text = _AUTH_SCHEME.sub(lambda m: m["key"] + MASK if _credential_like(m["value"]) else m[0], text)
    if "=" in text:
        text = _SESSION_VALUE.sub(lambda m: m[0] if _is_ref(m["value"]) else m["key"] + MASK, text)
    if '"' in text and ":" in text:
        text = _JSON_SECRET.sub(lambda m: m[0] if _is_ref(m["value"]) or m["value"] == MASK
                                else f'{m["key"]}"{MASK}"', text)
    return text


def _is_ref(value: str) -> bool:
    """An ``env:NAME`` reference (shown: it names where the secret is, not what it is)."""
    return _FULL_ENV_REF.fullmatch(value.strip("'")) is not None


def clean(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """Foreign text made safe to show: secrets scrubbed, control characters removed."""
    return strip_control(scrub(text, secrets))


def is_secret_key(key: str) -> bool:
    return bool(key) and SECRET_KEY.search(key) is not None


def mask_data(value: Any, secrets: list[str] | tuple[str, ...] = (), key: str = "") -> Any:
    """``value`` with every secret masked: known values, values under secret-named keys, URL/DSN passwords."""
    if isinstance(value, dict):
        return {(scrub(k, secrets) if isinstance(k, str) else k): mask_data(v, secrets, str(k))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_data(v, secrets, key) for v in value]
    if isinstance(value, str):
        if is_secret_key(key) and value not in _NOT_SECRETS and not _FULL_ENV_REF.fullmatch(value):
            if "://" in value or "=" in value:  # a DSN or URL: its host and database help, its password not
                masked = scrub(value, secrets)
                return masked if masked != value or "dsn" in key.lower() else MASK
            return MASK
        return scrub(value, secrets)
    return value


def mask_secret(value: str | None) -> str | None:
    """How a secret field is shown: its env: reference, a DSN/URL with its password masked, or the mask."""
    if value is None:
        return None
    if _FULL_ENV_REF.fullmatch(value):
        return value
    if "://" in value:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return MASK
        if parts.scheme.startswith(("postgres", "redis")):
            return scrub(value)
        if parts.password is not None or parts.query or parts.path.strip("/"):
            # webhook-style URLs carry their secret in the path or query: show the host only
            return urlunsplit((parts.scheme, parts.hostname or "", "/" + MASK, "", ""))
        return scrub(value)
    if "=" in value:  # key=value DSN
        return scrub(value)
    return MASK


def _secret_fields(model: BaseModel) -> list[tuple[str, str]]:
    """(field name, raw value) of every secret field in ``model``, recursively."""
    out: list[tuple[str, str]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("secret") and isinstance(value, str):
            out.append((name, value))
        for item in (value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]):
            if isinstance(item, BaseModel):
                out.extend(_secret_fields(item))
    return out


def unset_secrets(model: BaseModel, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted field, variable) for every ``env:NAME`` a secret field of ``model`` names that is unset."""
    found: list[tuple[str, str]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        where = f"{prefix}{name}"
        if extra.get("secret") and isinstance(value, str):
            found.extend((where, var) for var in missing_env(value))
        elif isinstance(value, BaseModel):
            found.extend(unset_secrets(value, where + "."))
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    found.extend(unset_secrets(item, f"{where}.{key}."))
    return found


def _password_of(text: str) -> list[str]:
    found: list[str] = []
    if "://" in text:
        try:
            parts = urlsplit(text)
            if parts.password:
                found.extend([parts.password, unquote(parts.password)])
                found.extend(basic_credentials(parts.username or "", parts.password))
            if parts.path.strip("/") or parts.query:
                found.append(text)  # a webhook URL is a secret as a whole
        except ValueError:
            found.append(text)
    for match in _QUERY_SECRET.finditer(text):
        found.extend([match["value"], unquote(match["value"])])
    for match in _KV_PASSWORD.finditer(text):
        raw = match["value"]
        found.append(raw[1:-1].replace("\\'", "'").replace("\\\\", "\\") if raw.startswith("'") else raw)
    return found


def secret_values(model: BaseModel) -> list[str]:
    """Every secret value ``model`` holds or resolves to (to scrub from free text), longest first."""
    found: list[str] = []
    for _name, value in _secret_fields(model):
        for candidate in {value, resolve_secret(value) or ""}:
            if not candidate or _FULL_ENV_REF.fullmatch(candidate):
                continue
            if "://" in candidate or "=" in candidate:
                found.extend(p for p in _password_of(candidate) if not p.startswith("env:"))
            else:
                found.append(candidate)
        for var in env_names(value):
            resolved = os.environ.get(var)
            if resolved:
                found.append(resolved)
    found.extend(_userinfo_secrets(model))
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def _userinfo_secrets(model: BaseModel) -> list[str]:
    """The password of every URL field of ``model`` (recursively; secret-marked or not, such as
    ``service.api_url: http://user:PASS@host``) and its HTTP Basic form ``base64(user:password)``."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)
        elif isinstance(value, str) and "://" in value and "@" in value:
            resolved = resolve_secret(value) or ""
            for url in {value, resolved}:
                try:
                    parts = urlsplit(url)
                    user, password = parts.username, parts.password
                except ValueError:
                    continue
                if password and not password.startswith("env:"):
                    found.extend([password, unquote(password), *basic_credentials(user or "", password)])

    walk(model)
    return found


def masked_dump(model: BaseModel) -> Any:
    """The model as plain data with every secret field masked (and URL passwords in other fields)."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("secret"):
            out[name] = mask_secret(value)
        elif isinstance(value, BaseModel):
            out[name] = masked_dump(value)
        elif isinstance(value, dict):
            out[name] = {k: masked_dump(v) if isinstance(v, BaseModel) else mask_data(v) for k, v in value.items()}
        elif isinstance(value, list):
            out[name] = [masked_dump(v) if isinstance(v, BaseModel) else mask_data(v) for v in value]
        else:
            out[name] = mask_data(value)
    return out
