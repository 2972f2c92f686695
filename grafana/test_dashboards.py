#!/usr/bin/env python3
"""Structural checks for the pidwarden dashboards (standard library only).

    python3 -m unittest grafana/test_dashboards.py

Checks what Grafana would not complain about but users would: a stable uid, a
schemaVersion Grafana 9+ understands, the datasource chosen through a
variable (never a hard-coded datasource uid), the `instance`, `namespace`,
`pod` and `container` variables (the Kubernetes ones filter every
per-container query through pidwarden_container_info, and their "All" also
matches containers outside Kubernetes), a description on every panel, and
that queries.py turns every expression into plain PromQL. Whether the expressions parse and run is checked
against a real Prometheus by the end-to-end tests.
"""

import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARDS = os.path.join(HERE, "dashboards")
EXPECTED = {"pidwarden-fleet", "pidwarden-container", "pidwarden-remediation"}

# Panels that show where a leak's memory is, who holds the zombies and the
# node's own limit: (dashboard uid, panel title, metric its query reads).
# tests/tests/dashboards_live.rs requires each of them to return data.
SIGNAL_PANELS = [
    ("pidwarden-container", "Memory per command group", "pidwarden_container_process_group_memory_bytes"),
    ("pidwarden-container", "Oldest copy age", "pidwarden_container_process_group_oldest_start_time_seconds"),
    ("pidwarden-container", "Zombie parents", "pidwarden_container_zombie_parent_processes"),
    ("pidwarden-fleet", "Node PID headroom", "pidwarden_node_pids_headroom"),
    ("pidwarden-fleet", "Zombie parents, top 20", "pidwarden_container_zombie_parent_processes"),
]


def load():
    out = {}
    for name in sorted(os.listdir(DASHBOARDS)):
        if name.endswith(".json"):
            with open(os.path.join(DASHBOARDS, name), encoding="utf-8") as f:
                out[name] = json.load(f)
    return out


def all_panels(items):
    for panel in items or []:
        yield panel
        yield from all_panels(panel.get("panels"))


def datasources(node):
    """Yield every `datasource` object anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource" and isinstance(value, dict):
                yield value
            yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


def queries_with(assignment):
    """The expressions queries.py prints with `--set assignment`."""
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "queries.py"), "--set", assignment],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line)["expr"] for line in result.stdout.splitlines()]


class Dashboards(unittest.TestCase):
    def setUp(self):
        self.dashboards = load()

    def test_the_three_dashboards_exist_with_their_uids(self):
        uids = {d["uid"] for d in self.dashboards.values()}
        self.assertEqual(uids, EXPECTED)
        for name, d in self.dashboards.items():
            self.assertEqual(name, d["uid"] + ".json")

    def test_schema_version(self):
        for name, d in self.dashboards.items():
            self.assertGreaterEqual(d["schemaVersion"], 36, name)

    def test_variables(self):
        for name, d in self.dashboards.items():
            variables = {v["name"]: v for v in d["templating"]["list"]}
            ds = variables["datasource"]
            self.assertEqual((ds["type"], ds["query"]), ("datasource", "prometheus"), name)
            for var in ("instance", "namespace", "pod", "container"):
                v = variables[var]
                self.assertEqual(v["type"], "query", name)
                self.assertTrue(v["multi"] and v["includeAll"], (name, var))
                self.assertEqual(v["allValue"], ".*", (name, var))
                self.assertEqual(v["datasource"]["uid"], "${datasource}", (name, var))
            for var in ("namespace", "pod", "container"):
                definition = variables[var]["definition"]
                self.assertIn("pidwarden_container_info", definition, (name, var))
                self.assertEqual(definition, variables[var]["query"]["query"], (name, var))
            self.assertIn(", namespace)", variables["namespace"]["definition"])
            self.assertIn(", pod)", variables["pod"]["definition"])
            self.assertIn('namespace=~"$namespace"', variables["pod"]["definition"])
            self.assertIn(", name)", variables["container"]["definition"])
            self.assertIn('pod=~"$pod"', variables["container"]["definition"])
            # Kubernetes selectors come before the container they narrow down.
            order = [v["name"] for v in d["templating"]["list"]]
            self.assertLess(order.index("namespace"), order.index("pod"), name)
            self.assertLess(order.index("pod"), order.index("container"), name)
            for var in ("namespace", "pod"):
                v = variables[var]
                self.assertEqual(v["current"]["value"], ["$__all"], (name, var))
                # Containers outside Kubernetes have empty namespace/pod labels:
                # "All" must match the empty string, or they would vanish.
                self.assertIsNotNone(re.fullmatch(v["allValue"], ""), (name, var))

    def test_container_queries_filter_by_namespace_and_pod(self):
        for name, d in self.dashboards.items():
            exprs = [a["expr"] for a in d["annotations"]["list"] if a.get("expr")]
            exprs += [
                t["expr"] for p in all_panels(d["panels"]) for t in p.get("targets") or []
            ]
            checked = 0
            for expr in exprs:
                if 'name=~"$container"' not in expr:
                    continue
                checked += 1
                self.assertIn('namespace=~"$namespace"', expr, name)
                self.assertIn('pod=~"$pod"', expr, name)
                if not expr.startswith("pidwarden_container_info{"):
                    self.assertRegex(expr, r"and on\([^)]*\bid\) pidwarden_container_info\{", name)
            self.assertGreater(checked, 0, name)

    def test_no_hard_coded_datasource(self):
        for name, d in self.dashboards.items():
            for ds in datasources(d):
                if ds.get("type") == "grafana":
                    continue  # the built-in annotation source
                self.assertEqual(ds, {"type": "prometheus", "uid": "${datasource}"}, name)

    def test_every_panel_is_described_and_queries_prometheus(self):
        for name, d in self.dashboards.items():
            ids = []
            for panel in all_panels(d["panels"]):
                ids.append(panel["id"])
                self.assertTrue(panel.get("description"), (name, panel.get("title")))
                if panel["type"] == "row":
                    continue
                self.assertTrue(panel.get("targets"), (name, panel["title"]))
                for target in panel["targets"]:
                    self.assertTrue(target["expr"].strip(), (name, panel["title"]))
            self.assertEqual(len(ids), len(set(ids)), "%s: duplicate panel ids" % name)

    def test_queries_py_substitutes_every_variable(self):
        result = subprocess.run(
            [sys.executable, os.path.join(HERE, "queries.py")],
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        expected = sum(
            len(p.get("targets") or [])
            for d in self.dashboards.values()
            for p in all_panels(d["panels"])
        ) + sum(
            1 for d in self.dashboards.values() for a in d["annotations"]["list"] if a.get("expr")
        )
        self.assertEqual(len(lines), expected)
        self.assertEqual({line["dashboard"] for line in lines}, EXPECTED)
        for line in lines:
            self.assertNotIn("$", line["expr"], line)
            self.assertNotIn("[[", line["expr"], line)
            self.assertTrue(line["panel"], line)

    def test_queries_py_set_overrides(self):
        exprs = queries_with("container=web")
        self.assertTrue(any('name=~"web"' in e for e in exprs))
        self.assertFalse(any('name=~".*"' in e for e in exprs))

    def test_queries_py_substitutes_namespace_and_pod(self):
        exprs = queries_with("namespace=shop")
        self.assertTrue(any('namespace=~"shop",pod=~".*"' in e for e in exprs))
        self.assertFalse(any('namespace=~".*"' in e for e in exprs))

    def test_signal_panels_exist_and_read_their_metric(self):
        for uid, title, metric in SIGNAL_PANELS:
            d = self.dashboards[uid + ".json"]
            found = [p for p in all_panels(d["panels"]) if p.get("title") == title]
            self.assertEqual(len(found), 1, (uid, title))
            exprs = [t["expr"] for t in found[0]["targets"]]
            self.assertTrue(any(metric + "{" in e for e in exprs), (uid, title, exprs))


if __name__ == "__main__":
    unittest.main()
