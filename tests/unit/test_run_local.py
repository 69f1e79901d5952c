"""The local runner's pure parts: ports for every version, points for the comparison."""

from __future__ import annotations

import pytest

from iris_tools.local import commands as run_local, comparison as compare


def test_named_ports_keep_their_order_and_a_new_version_gets_the_next_free_one() -> None:
    ports = run_local.assign_ports(["lin_svc", "rbf_svc", "svc"], "svc=5001 lin_svc=5002")
    assert list(ports.items()) == [("svc", 5001), ("lin_svc", 5002), ("rbf_svc", 5003)]


def test_ports_named_for_versions_that_do_not_exist_are_ignored() -> None:
    assert run_local.assign_ports(["a", "b"], "a=6000,gone=6001") == {"a": 6000, "b": 6001}


@pytest.mark.parametrize("spec", ["svc", "svc=", "svc=abc", "svc=70000", "svc=0"])
def test_a_malformed_ports_spec_is_refused_with_an_example(spec: str) -> None:
    with pytest.raises(run_local.RunError, match="is not NAME=PORT"):
        run_local.parse_ports(spec)


@pytest.mark.parametrize("tokens, points", [
    ([], [(5.8, 3.4)]),
    (["6.1,2.8"], [(6.1, 2.8)]),
    (["5.8,3.4", "7,3"], [(5.8, 3.4), (7.0, 3.0)]),
    (["6.1", "2.8"], [(6.1, 2.8)]),
])
def test_points_come_comma_joined_or_as_a_plain_pair(tokens: list[str], points: list[tuple[float, ...]]) -> None:
    assert compare.parse_points(tokens) == points


def test_a_point_that_is_not_numbers_is_refused() -> None:
    with pytest.raises(compare.RunError, match="POINT"):
        compare.parse_points(["5.8,abc"])


def test_name_value_points_are_kept_by_name_and_a_mix_is_refused() -> None:
    assert compare.parse_points(["tenure=12,plan=pro", "5.8,3.4"]) == [{"tenure": "12", "plan": "pro"}, (5.8, 3.4)]
    with pytest.raises(compare.RunError, match="mixes name=value pairs with plain values"):
        compare.parse_points(["tenure=12,3"])


def test_versions_are_compared_in_one_table_per_feature_set_each_asked_the_points_that_fit(capsys) -> None:
    """Two iris versions and an imported regressor of other features: the iris table gets the plain point, the
    regressor's the named one; a version never gets a point of other features."""
    import json
    import threading
    import urllib.parse
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[tuple[str, dict]] = []

    def server(name: str, features: list[dict], answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                parts = urllib.parse.urlsplit(self.path)
                if parts.path == "/metadata":
                    body = {"model": {"features": features, "algorithm": f"x.{name}", "training_accuracy": None,
                                      "task": "regressor"}, "serving": {"revision": name}}
                else:
                    query = dict(urllib.parse.parse_qsl(parts.query))
                    asked.append((name, query))
                    body = answer(query)
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{httpd.server_port}"

    iris = [{"name": "sepal_length", "alias": "length", "type": "number"},
            {"name": "sepal_width", "alias": "width", "type": "number"}]
    costs = [{"name": "age", "alias": "age", "type": "number"},
             {"name": "plan", "alias": "plan", "type": "string", "categories": ["basic"]}]
    targets = [("a", server("a", iris, lambda q: {"predicted_class": "setosa"})),
               ("b", server("b", iris, lambda q: {"predicted_class": "virginica"})),
               ("cost", server("cost", costs, lambda q: {"prediction": float(q["age"]) * 2}))]
    assert compare.compare([(5.8, 3.4), {"age": "21", "plan": "basic"}], targets) == 0
    out = capsys.readouterr().out
    assert sorted(asked, key=lambda item: item[0]) == [("a", {"length": "5.8", "width": "3.4"}),
                                                        ("b", {"length": "5.8", "width": "3.4"}),
                                                        ("cost", {"age": "21", "plan": "basic"})]
    assert "length  width  a       b" in out and "age  plan   cost" in out and "21   basic  42" in out
