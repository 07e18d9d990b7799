"""Public proxy URLs (``-liveRunnerProxyUrl``): a template with one ``{proxy}`` placeholder, in the host
(``http://{proxy}.apps.example.com``) or as the last path segment (default ``{service}/run/{proxy}``).

:func:`parse_template` checks a template (``ValueError`` with go-livepeer's reason); :meth:`ProxyTemplate.url`
makes the URL for an ID; :meth:`ProxyTemplate.match` finds the ID and the rest of the path in a request, with
go's rules: a path template needs the exact ``Host`` (port included, any case) and prefix; a host template
ignores the port, compares case-insensitively and lowercases the ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

PLACEHOLDER = "{proxy}"


@dataclass(frozen=True)
class ProxyTemplate:
    template: str
    scheme: str
    host: str
    """``host[:port]`` as written, lowercased."""
    in_host: bool
    prefix: str
    """Path template: the path before the placeholder; host template: the static path (no trailing ``/``)."""
    host_prefix: str = ""
    host_suffix: str = ""

    def url(self, proxy_id: str) -> str:
        if self.in_host:
            return self.template.replace(PLACEHOLDER, proxy_id.lower()).rstrip("/")
        return self.template.replace(PLACEHOLDER, quote(proxy_id, safe="")).rstrip("/")

    def match(self, host: str, path: str) -> tuple[str, str] | None:
        """``(proxy_id, app_path)`` when a request for ``host`` + ``path`` belongs to this template."""
        host = host.lower()
        if self.in_host:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not (name.startswith(self.host_prefix) and name.endswith(self.host_suffix)):
                return None
            middle = name[len(self.host_prefix) : len(name) - len(self.host_suffix)]
            if not middle or len(name) < len(self.host_prefix) + len(self.host_suffix):
                return None
            if self.prefix and not (path == self.prefix or path.startswith(self.prefix + "/")):
                return None
            return middle, path[len(self.prefix) :]
        if host != self.host or not path.startswith(self.prefix):
            return None
        rest = path[len(self.prefix) :]
        proxy_id, _, app_path = rest.partition("/")
        if not proxy_id:
            return None
        return unquote(proxy_id), "/" + app_path if app_path or rest.endswith("/") else ""


def parse_template(template: str, service_url: str) -> ProxyTemplate:
    """The checked template; empty means ``{service_url}/run/{proxy}``. ``ValueError`` with the reason."""
    if not template:
        if not service_url:
            raise ValueError("live runner proxy url requires service URI")
        template = service_url.rstrip("/") + "/run/" + PLACEHOLDER
    if template.count(PLACEHOLDER) != 1:
        raise ValueError("live runner proxy url must contain exactly one {proxy} placeholder")
    probe = urlsplit(template.replace(PLACEHOLDER, "proxyid"))
    if not probe.scheme or not probe.hostname:
        raise ValueError("live runner proxy url must be an absolute URL")
    if probe.scheme not in ("http", "https"):
        raise ValueError("live runner proxy url scheme must be http or https")
    after_scheme = template.split("://", 1)[1]
    authority, slash, path = after_scheme.partition("/")
    path = slash + path
    if PLACEHOLDER in authority:
        name = authority.lower().rsplit(":", 1)[0] if ":" in authority else authority.lower()
        pre, _, post = name.partition(PLACEHOLDER)
        return ProxyTemplate(template, probe.scheme, authority.lower(), True, path.rstrip("/"), pre, post)
    if PLACEHOLDER not in path:
        raise ValueError("live runner proxy url placeholder must be in the host or path")
    before, _, after = path.partition(PLACEHOLDER)
    if after not in ("", "/") or not before.endswith("/"):
        raise ValueError("live runner proxy url path placeholder must be the final path segment")
    return ProxyTemplate(template, probe.scheme, authority.lower(), False, before)
