#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in deploy/kubernetes/.

    python3 -m unittest deploy/kubernetes/test/test_manifests.py

No cluster is needed. Checked here:
- `kubectl kustomize deploy/kubernetes` renders, with exactly the expected
  objects (the example Secret and AlertmanagerConfig are not in it);
- the core objects (and secret.example.yaml) pass kubernetes-validate in
  strict mode for Kubernetes KUBERNETES_VERSION;
- every custom resource (PrometheusRule, PodMonitor, AlertmanagerConfig)
  validates against the openAPIV3Schema of its CRD copy in crds/, with
  unknown fields rejected as the API server's strict field validation does;
- the PrometheusRule's groups pass `promtool check rules`, and the committed
  PrometheusRule is what gen-prometheusrule.py produces from alerts/ now;
- the properties the README promises: host PID namespace, read-only host
  mounts, capabilities (none for the exporter, KILL for the remediator),
  read-only root filesystems, probes, the token Secret, the ports the
  Service and NetworkPolicy name.

Needs: kubectl (kustomize built in), promtool, PyYAML, jsonschema,
kubernetes-validate (pip).
"""

import copy
import os
import subprocess
import sys
import tempfile
import unittest

import jsonschema
import kubernetes_validate
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(BASE))
CRDS = os.path.join(HERE, "crds")
KUBERNETES_VERSION = "1.34.0"

CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "DaemonSet", "Service", "NetworkPolicy"}
CUSTOM_KINDS = {"PodMonitor", "PrometheusRule"}
EXAMPLES = ("secret.example.yaml", "alertmanagerconfig.example.yaml")


class Loader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` (an enum value in the CRDs) as a string."""


Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load_all(text):
    return [d for d in yaml.load_all(text, Loader=Loader) if d]


def load_file(path):
    with open(path, encoding="utf-8") as f:
        return load_all(f.read())


def run(*cmd):
    """Run a command (bounded by a timeout); return (exit code, stdout, stderr)."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, result.stdout, result.stderr


_RENDERED = None


def rendered():
    """The objects `kubectl kustomize deploy/kubernetes` renders (rendered once)."""
    global _RENDERED
    if _RENDERED is None:
        code, out, err = run("kubectl", "kustomize", BASE)
        if code != 0:
            raise AssertionError("kubectl kustomize failed:\n" + err)
        _RENDERED = load_all(out)
    return copy.deepcopy(_RENDERED)


def by_kind(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    if len(found) != 1:
        raise AssertionError("expected one %s, found %d" % (kind, len(found)))
    return found[0]


def strict_schema(schema):
    """openAPIV3Schema -> JSON schema: drop x-kubernetes-* keywords, reject unknown fields.

    Kubernetes prunes (or, with strict field validation, refuses) fields a
    structural schema does not declare, unless x-kubernetes-preserve-unknown-fields
    is set; jsonschema would silently accept them, so every object schema with
    declared properties gets additionalProperties: false.
    """
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    out = {k: strict_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema and "additionalProperties" not in schema and not preserve:
        out["additionalProperties"] = False
    return out


def crd_schemas():
    """{(apiVersion, kind): JSON schema} from the CRD copies."""
    schemas = {}
    for name in sorted(os.listdir(CRDS)):
        if not name.endswith(".yaml"):
            continue
        for crd in load_file(os.path.join(CRDS, name)):
            spec = crd["spec"]
            for version in spec["versions"]:
                api_version = "%s/%s" % (spec["group"], version["name"])
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                # apiVersion, kind and metadata are checked by the API server itself.
                schema["properties"]["metadata"] = {"type": "object"}
                schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def container(daemonset, name):
    for c in daemonset["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError("no container %s" % name)


class Render(unittest.TestCase):
    def test_kustomize_renders_the_base_and_leaves_examples_out(self):
        kinds = sorted(o["kind"] for o in rendered())
        self.assertEqual(kinds, sorted(CORE_KINDS | CUSTOM_KINDS))
        for obj in rendered():
            if obj["kind"] != "Namespace":
                self.assertEqual(obj["metadata"]["namespace"], "pidwarden", obj["kind"])
            self.assertNotEqual(obj["kind"], "Secret", "a real Secret must not be in the base")

    def test_core_objects_pass_kubernetes_validate_strict(self):
        objects = [o for o in rendered() if o["kind"] in CORE_KINDS]
        objects += load_file(os.path.join(BASE, "secret.example.yaml"))
        for obj in objects:
            with self.subTest(kind=obj["kind"]):
                try:
                    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
                except kubernetes_validate.ValidationError as e:
                    self.fail("%s: %s at %s" % (obj["kind"], e.message, list(e.path)))

    def test_strict_validation_rejects_an_unknown_field(self):
        # The check above can fail: a misspelt field is refused.
        ds = by_kind(rendered(), "DaemonSet")
        ds["spec"]["template"]["spec"]["hostPid"] = True
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(ds, KUBERNETES_VERSION, strict=True)


class CustomResources(unittest.TestCase):
    def setUp(self):
        self.schemas = crd_schemas()

    def custom_resources(self):
        objects = [o for o in rendered() if o["kind"] in CUSTOM_KINDS]
        objects += load_file(os.path.join(BASE, "alertmanagerconfig.example.yaml"))
        return objects

    def test_every_custom_resource_matches_its_crd_schema(self):
        objects = self.custom_resources()
        self.assertEqual(
            sorted(o["kind"] for o in objects), ["AlertmanagerConfig", "PodMonitor", "PrometheusRule"]
        )
        for obj in objects:
            with self.subTest(kind=obj["kind"]):
                schema = self.schemas[(obj["apiVersion"], obj["kind"])]
                errors = sorted(
                    jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path)
                )
                self.assertEqual(
                    [], ["%s: %s" % (list(e.path), e.message) for e in errors], obj["kind"]
                )

    def test_schema_check_rejects_unknown_and_mistyped_fields(self):
        pm = by_kind(rendered(), "PodMonitor")
        pm["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
        schema = self.schemas[(pm["apiVersion"], "PodMonitor")]
        self.assertFalse(jsonschema.Draft7Validator(schema).is_valid(pm))
        amc = load_file(os.path.join(BASE, "alertmanagerconfig.example.yaml"))[0]
        amc["spec"]["receivers"][0]["webhookConfigs"][0]["maxAlerts"] = "20"
        schema = self.schemas[(amc["apiVersion"], "AlertmanagerConfig")]
        self.assertFalse(jsonschema.Draft7Validator(schema).is_valid(amc))

    def test_prometheusrule_groups_pass_promtool(self):
        rule = by_kind(rendered(), "PrometheusRule")
        with tempfile.NamedTemporaryFile("w", suffix=".yml", encoding="utf-8") as f:
            yaml.safe_dump(rule["spec"], f)
            f.flush()
            code, out, err = run("promtool", "check", "rules", f.name)
        self.assertEqual(code, 0, out + err)

    def test_prometheusrule_is_generated_from_alerts(self):
        with open(os.path.join(ROOT, "alerts", "pidwarden.rules.yml"), encoding="utf-8") as f:
            source = yaml.safe_load(f)
        rule = by_kind(rendered(), "PrometheusRule")
        self.assertEqual(rule["spec"]["groups"], source["groups"])
        code, out, err = run(sys.executable, os.path.join(BASE, "gen-prometheusrule.py"), "--check")
        self.assertEqual(code, 0, out + err)

    def test_alertmanagerconfig_routes_remediation_alerts_to_the_service(self):
        amc = load_file(os.path.join(BASE, "alertmanagerconfig.example.yaml"))[0]
        route = amc["spec"]["route"]
        self.assertIn(
            {"name": "pidwarden_action", "matchType": "=~", "value": "kill-duplicates|restart"},
            route["matchers"],
        )
        service = by_kind(rendered(), "Service")
        port = service["spec"]["ports"][0]["port"]
        hook = amc["spec"]["receivers"][0]["webhookConfigs"][0]
        self.assertEqual(
            hook["url"],
            "http://%s.%s.svc:%d/api/v1/alerts"
            % (service["metadata"]["name"], service["metadata"]["namespace"], port),
        )
        self.assertEqual(
            hook["httpConfig"]["authorization"]["credentials"],
            {"name": "pidwarden-remediator-token", "key": "token"},
        )


class Privileges(unittest.TestCase):
    def setUp(self):
        self.ds = by_kind(rendered(), "DaemonSet")
        self.pod = self.ds["spec"]["template"]["spec"]

    def test_pod_uses_host_pid_and_no_api_token(self):
        self.assertTrue(self.pod["hostPID"])
        self.assertFalse(self.pod.get("hostNetwork", False))
        self.assertFalse(self.pod["automountServiceAccountToken"])

    def test_capabilities_and_root_filesystems(self):
        expected = {"exporter": [], "remediator": ["KILL"]}
        for name, added in expected.items():
            sc = container(self.ds, name)["securityContext"]
            self.assertEqual(sc["capabilities"]["drop"], ["ALL"], name)
            self.assertEqual(sc["capabilities"].get("add", []), added, name)
            self.assertTrue(sc["readOnlyRootFilesystem"], name)
            self.assertFalse(sc["allowPrivilegeEscalation"], name)
            self.assertFalse(sc.get("privileged", False), name)
            self.assertEqual(sc["runAsUser"], 0, name)

    def test_host_mounts_are_read_only_except_state_and_socket(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        for c in self.pod["containers"]:
            args = c["args"]
            self.assertIn("--proc-root=/host/proc", args)
            self.assertIn("--cgroup-root=/host/sys/fs/cgroup", args)
            self.assertIn("--cri-endpoint=unix:///run/containerd/containerd.sock", args)
            for m in c["volumeMounts"]:
                host = volumes[m["name"]].get("hostPath", {}).get("path")
                if host in ("/proc", "/sys/fs/cgroup"):
                    self.assertTrue(m.get("readOnly"), (c["name"], m))
                    self.assertEqual(m["mountPath"], "/host" + host)
                if host == "/var/lib/pidwarden":
                    self.assertEqual(c["name"], "remediator")
            self.assertTrue(c["resources"]["limits"] and c["resources"]["requests"], c["name"])
        self.assertEqual(volumes["cri-socket"]["hostPath"]["type"], "Socket")

    def test_probes(self):
        probes = {
            c["name"]: (c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"])
            for c in self.pod["containers"]
        }
        self.assertEqual(probes, {"exporter": ("/healthz", "/healthz"), "remediator": ("/healthz", "/readyz")})

    def test_token_secret_is_mounted_and_never_sent_to_peers(self):
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        self.assertEqual(volumes["token"]["secret"]["secretName"], "pidwarden-remediator-token")
        remediator = container(self.ds, "remediator")
        mount = next(m for m in remediator["volumeMounts"] if m["name"] == "token")
        path = os.path.join(mount["mountPath"], volumes["token"]["secret"]["items"][0]["path"])
        self.assertIn("--token-file=" + path, remediator["args"])
        # Forwarding is off unless configured (pod IPs need TLS between the
        # remediators), and the webhook token is never the peer token.
        peer_flags = [a for a in remediator["args"] if a.startswith("--peer")]
        self.assertEqual(peer_flags, [])
        self.assertNotIn("--peer-token-file=" + path, remediator["args"])
        self.assertFalse(any(m["name"] == "token" for m in container(self.ds, "exporter")["volumeMounts"]))

    def test_service_and_network_policy_name_real_ports(self):
        ports = {
            p["name"]: p["containerPort"] for c in self.pod["containers"] for p in c["ports"]
        }
        self.assertEqual(ports, {"metrics": 9917, "webhook": 9918})
        remediator = container(self.ds, "remediator")
        self.assertIn("--listen=0.0.0.0:%d" % ports["webhook"], remediator["args"])
        service = by_kind(rendered(), "Service")
        self.assertEqual(service["spec"]["ports"][0]["targetPort"], "webhook")
        self.assertEqual(service["spec"]["selector"], self.ds["spec"]["selector"]["matchLabels"])
        policy = by_kind(rendered(), "NetworkPolicy")
        self.assertEqual(policy["spec"]["podSelector"], self.ds["spec"]["selector"])
        sources = {}
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                self.assertIn(port["port"], ports)
                for peer in rule["from"]:
                    sources.setdefault(port["port"], []).append(peer)
        alertmanager = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}},
        }
        self.assertIn(alertmanager, sources["webhook"])
        self.assertNotIn(alertmanager, sources["metrics"])
        self.assertIn({"podSelector": self.ds["spec"]["selector"]}, sources["webhook"])

    def test_podmonitor_jobs_match_the_rules(self):
        pm = by_kind(rendered(), "PodMonitor")
        jobs = {}
        for ep in pm["spec"]["podMetricsEndpoints"]:
            job = [r for r in ep["relabelings"] if r.get("targetLabel") == "job"]
            jobs[ep["port"]] = job[0]["replacement"]
            drop = [r for r in ep["relabelings"] if r["action"] == "labeldrop"]
            self.assertRegex("namespace", "^(?:%s)$" % drop[0]["regex"])
            self.assertRegex("pod", "^(?:%s)$" % drop[0]["regex"])
        self.assertEqual(jobs, {"metrics": "pidwarden-exporter", "webhook": "pidwarden-remediator"})


class Flags(unittest.TestCase):
    """The DaemonSet's command lines are ones the binaries accept (the
    debug builds of this checkout; `scripts/test.sh` builds them first)."""

    def test_remediator_starts_from_the_shipped_config_in_dry_run(self):
        with open(os.path.join(ROOT, "deploy", "remediator.toml")) as a, open(
            os.path.join(ROOT, "deploy", "kubernetes", "remediator.toml")
        ) as b:
            self.assertEqual(a.read(), b.read(), "deploy/kubernetes/remediator.toml drifted")
        objs = rendered()
        ds = by_kind(objs, "DaemonSet")
        spec = ds["spec"]["template"]["spec"]
        rem = next(c for c in spec["containers"] if c["name"] == "remediator")
        self.assertIn("--config=/etc/pidwarden/config/remediator.toml", rem["args"])
        mount = next(m for m in rem["volumeMounts"] if m["name"] == "config")
        self.assertEqual(mount["mountPath"], "/etc/pidwarden/config")
        vol = next(v for v in spec["volumes"] if v["name"] == "config")
        cms = [o for o in objs if o["kind"] == "ConfigMap"]
        self.assertEqual([c["metadata"]["name"] for c in cms], [vol["configMap"]["name"]])
        text = cms[0]["data"]["remediator.toml"]
        self.assertRegex(text, r"(?m)^dry_run = true$")
        self.assertRegex(text, r'(?m)^protected_namespaces = \["kube-system", "pidwarden"\]$')

    def test_every_daemon_command_line_parses(self):
        ds = by_kind(rendered(), "DaemonSet")
        for c in ds["spec"]["template"]["spec"]["containers"]:
            cmd = c.get("command", []) + c.get("args", [])
            binary = os.path.join(ROOT, "target", "debug", os.path.basename(cmd[0]))
            if not os.path.exists(binary):
                self.skipTest(f"{binary} not built (cargo build first)")
            # --help after every flag: clap refuses an unknown flag or a bad
            # value before it prints the help.
            r = subprocess.run([binary, *cmd[1:], "--help"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, f"{c['name']}: {r.stderr}")


if __name__ == "__main__":
    unittest.main()
