"""Tests the Helm chart helm/bursar with a real helm binary.

helm lint --strict and helm template with the default values and with
values-custom.yaml, assertions on the rendered objects, the policy files of
the rendered ConfigMap compiled by bursarctl, schema and template rejections
of bad values, and a lint of the Dockerfile the chart's image is built from.

Run by tests/helm/helm_test.sh (which fetches helm), with Debian's python3.
"""

import argparse
import os
import re
import subprocess
import sys
import unittest

import yaml

ARGS = None  # parsed command line, set in main()


def helm(*args, check=True):
    """Runs helm; returns (exit code, stdout, stderr)."""
    run = subprocess.run([ARGS.helm, *args], capture_output=True, text=True,
                         timeout=120)
    if check and run.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({run.returncode}):\n{run.stderr}")
    return run.returncode, run.stdout, run.stderr


def chart_dir():
    return os.path.join(ARGS.source, "helm", "bursar")


def custom_values():
    return os.path.join(ARGS.source, "tests", "helm", "values-custom.yaml")


def render(*extra):
    """helm template with `extra` arguments; returns {(kind, name): object}."""
    _, out, _ = helm("template", "rel", chart_dir(), "--namespace", "llm",
                     *extra)
    objects = {}
    for doc in yaml.safe_load_all(out):
        if not doc:
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in objects, f"rendered twice: {key}"
        objects[key] = doc
    return objects


def of_kind(objects, kind):
    return [o for (k, _), o in objects.items() if k == kind]


def one(objects, kind):
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(statefulset):
    containers = statefulset["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, containers
    return containers[0]


def flags(statefulset):
    """bursard's flags as {name: value} (value None for a bare --flag)."""
    result = {}
    for arg in container(statefulset)["args"]:
        assert arg.startswith("--"), f"not a flag: {arg!r}"
        name, _, value = arg[2:].partition("=")
        result[name] = value if "=" in arg else None
    return result


def mounts(statefulset):
    return {m["mountPath"]: m for m in container(statefulset)["volumeMounts"]}


def volumes(statefulset):
    return {v["name"]: v
            for v in statefulset["spec"]["template"]["spec"]["volumes"]}


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def policy_check(configmap, name):
    """Writes the ConfigMap's files to a directory and compiles them with
    `bursarctl policy check`; returns the directory."""
    directory = os.path.join(ARGS.work, name)
    os.makedirs(directory, exist_ok=True)
    for file_name, content in configmap["data"].items():
        with open(os.path.join(directory, file_name), "w") as f:
            f.write(content)
    run = subprocess.run([ARGS.bursarctl, "policy", "check", directory],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (
        f"the chart's policies do not compile:\n{run.stdout}{run.stderr}")
    return directory


_BURSARD_FLAGS = None


def bursard_flags():
    """Every flag the bursard binary knows, from `bursard --helpfull`."""
    global _BURSARD_FLAGS
    if _BURSARD_FLAGS is None:
        run = subprocess.run([ARGS.bursard, "--helpfull"], capture_output=True,
                             text=True)
        _BURSARD_FLAGS = set(re.findall(r"^\s+--([a-z0-9_]+) ",
                                        run.stdout + run.stderr, re.M))
        assert "listen" in _BURSARD_FLAGS, run.stdout + run.stderr
    return _BURSARD_FLAGS


def assert_http_probes(test, sts):
    """Startup and liveness GET /healthz, readiness GET /readyz, on the
    container port named http, which bursard binds on every interface, in
    plaintext (bursard's HTTP port never speaks TLS)."""
    c = container(sts)
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        test.assertEqual(c[probe]["httpGet"],
                         {"path": path, "port": "http", "scheme": "HTTP"},
                         probe)
        test.assertNotIn("grpc", c[probe], probe)
        test.assertNotIn("tcpSocket", c[probe], probe)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    test.assertEqual(flags(sts)["http_listen"], f"0.0.0.0:{ports['http']}")


class CommonChecks:
    """Assertions that hold for every set of values."""

    def check_common(self, objects, grpc_port=8081, http_port=8082):
        sts = one(objects, "StatefulSet")
        # The chart passes only flags the image's bursard knows.
        unknown = set(flags(sts)) - bursard_flags()
        self.assertFalse(unknown, f"bursard has no flags {sorted(unknown)}")
        spec = sts["spec"]
        pod = spec["template"]
        pod_labels = pod["metadata"]["labels"]
        self.assertEqual(spec["replicas"], 1)
        self.assertTrue(matches(spec["selector"]["matchLabels"], pod_labels))

        # The ledger lives on a PVC from volumeClaimTemplates.
        claims = {c["metadata"]["name"]: c for c in spec["volumeClaimTemplates"]}
        self.assertIn("data", claims)
        self.assertNotIn("data", volumes(sts))
        data_mount = mounts(sts)["/var/lib/bursar"]
        self.assertEqual(data_mount["name"], "data")
        f = flags(sts)
        self.assertTrue(f["data_dir"].startswith("/var/lib/bursar/"), f)

        # Listens on every interface in the pod, on the declared ports.
        self.assertEqual(f["listen"], f"0.0.0.0:{grpc_port}")
        self.assertEqual(f["http_listen"], f"0.0.0.0:{http_port}")
        ports = {p["name"]: p["containerPort"] for p in container(sts)["ports"]}
        self.assertEqual(ports, {"grpc": grpc_port, "http": http_port})

        # Non-root, read-only root filesystem, no privilege escalation.
        pod_sc = pod["spec"]["securityContext"]
        c_sc = container(sts)["securityContext"]
        self.assertIs(pod_sc["runAsNonRoot"], True)
        self.assertGreater(pod_sc["runAsUser"], 0)
        self.assertIn("fsGroup", pod_sc)
        self.assertIs(c_sc["readOnlyRootFilesystem"], True)
        self.assertIs(c_sc["allowPrivilegeEscalation"], False)
        self.assertEqual(c_sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(volumes(sts)["tmp"].get("emptyDir", None) is not None,
                         True)
        self.assertEqual(mounts(sts)["/tmp"]["name"], "tmp")
        self.assertIs(pod["spec"]["automountServiceAccountToken"], False)

        # Policies: every ConfigMap file is mounted one by one into
        # --policy_dir, never the directory (its hidden ..data copy would be
        # loaded twice).
        cm = one(objects, "ConfigMap")
        policy_dir = f["policy_dir"]
        self.assertNotIn(policy_dir, mounts(sts))
        mounted = {m["subPath"] for m in container(sts)["volumeMounts"]
                   if m["name"] == "policies"}
        self.assertEqual(mounted, set(cm["data"]))
        for name in cm["data"]:
            self.assertEqual(mounts(sts)[f"{policy_dir}/{name}"]["subPath"], name)
        self.assertEqual(volumes(sts)["policies"]["configMap"]["name"],
                         cm["metadata"]["name"])

        # The Service exposes both ports and selects the pod.
        services = of_kind(objects, "Service")
        api = [s for s in services if s["spec"].get("clusterIP") != "None"]
        headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
        self.assertEqual(len(api), 1)
        self.assertEqual(len(headless), 1)
        self.assertEqual(spec["serviceName"], headless[0]["metadata"]["name"])
        for service in services:
            self.assertTrue(matches(service["spec"]["selector"], pod_labels))
            by_name = {p["name"]: p for p in service["spec"]["ports"]}
            self.assertEqual(by_name["grpc"]["targetPort"], "grpc")
            self.assertEqual(by_name["http"]["targetPort"], "http")
        return sts


class DefaultValuesTest(unittest.TestCase, CommonChecks):

    @classmethod
    def setUpClass(cls):
        cls.objects = render()

    def test_lint_strict(self):
        helm("lint", "--strict", chart_dir())

    def test_objects(self):
        kinds = sorted(k for k, _ in self.objects)
        self.assertEqual(kinds, ["ConfigMap", "PodDisruptionBudget", "Service",
                                 "Service", "ServiceAccount", "StatefulSet"])

    def test_statefulset(self):
        sts = self.check_common(self.objects)
        claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        self.assertEqual(claim["accessModes"], ["ReadWriteOnce"])
        self.assertEqual(claim["resources"]["requests"]["storage"], "10Gi")
        self.assertNotIn("storageClassName", claim)
        c = container(sts)
        self.assertEqual(c["image"], "bursar:0.1.0")
        self.assertEqual(c["resources"]["requests"],
                         {"cpu": "500m", "memory": "512Mi"})

    def test_grpc_probes_without_tls(self):
        sts = one(self.objects, "StatefulSet")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(container(sts)[probe]["grpc"], {"port": 8081},
                             probe)
            self.assertNotIn("tcpSocket", container(sts)[probe])
            self.assertNotIn("httpGet", container(sts)[probe])

    def test_http_probes_can_be_chosen_without_tls(self):
        sts = one(render("--set", "probes.mode=http"), "StatefulSet")
        assert_http_probes(self, sts)
        tcp = one(render("--set", "probes.mode=tcp"), "StatefulSet")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            self.assertEqual(container(tcp)[probe]["tcpSocket"],
                             {"port": "grpc"}, probe)

    def test_plaintext_is_explicit_and_no_tls_flags(self):
        f = flags(one(self.objects, "StatefulSet"))
        self.assertIn("insecure", f)
        self.assertIn("allow_insecure_remote", f)
        for flag in ("tls_cert", "tls_key", "tls_client_ca", "tokens_file"):
            self.assertNotIn(flag, f)
        self.assertNotIn("tls", volumes(one(self.objects, "StatefulSet")))

    def test_policies_from_dir_roll_the_pod(self):
        sts = one(self.objects, "StatefulSet")
        self.assertEqual(flags(sts)["policy_source"], "dir")
        annotations = sts["spec"]["template"]["metadata"]["annotations"]
        self.assertRegex(annotations["checksum/policies"], r"^[0-9a-f]{64}$")
        changed = render("--set-string", "policies.files.extra\\.yaml=# x\n")
        self.assertNotEqual(
            one(changed, "StatefulSet")["spec"]["template"]["metadata"]
            ["annotations"]["checksum/policies"],
            annotations["checksum/policies"])

    def test_default_policies_are_policies_example_and_compile(self):
        cm = one(self.objects, "ConfigMap")
        example = os.path.join(ARGS.source, "policies", "example")
        files = sorted(n for n in os.listdir(example) if n.endswith(".yaml"))
        self.assertEqual(sorted(cm["data"]), files)
        for name in files:
            with open(os.path.join(example, name)) as f:
                self.assertEqual(
                    cm["data"][name], f.read(),
                    f"helm/bursar/files/policies/{name} differs from "
                    f"policies/example/{name}: copy it over")
        policy_check(cm, "default-policies")

    def test_pdb(self):
        pdb = one(self.objects, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"], {
            "maxUnavailable": 0, "selector": pdb["spec"]["selector"]})
        pod_labels = one(self.objects, "StatefulSet")["spec"]["template"][
            "metadata"]["labels"]
        self.assertTrue(matches(pdb["spec"]["selector"]["matchLabels"],
                                pod_labels))

    def test_service_ports(self):
        service = self.objects[("Service", "rel-bursar")]
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        self.assertEqual(ports, {"grpc": 8081, "http": 8082})
        self.assertEqual(service["spec"]["type"], "ClusterIP")


class CustomValuesTest(unittest.TestCase, CommonChecks):

    @classmethod
    def setUpClass(cls):
        cls.objects = render("-f", custom_values())

    def test_lint_strict(self):
        helm("lint", "--strict", chart_dir(), "-f", custom_values())

    def test_objects(self):
        kinds = sorted(k for k, _ in self.objects)
        self.assertEqual(kinds, ["ConfigMap", "PodDisruptionBudget", "Service",
                                 "Service", "ServiceAccount", "ServiceMonitor",
                                 "StatefulSet"])
        for (_, name) in self.objects:
            self.assertTrue(name.startswith("budget-guard"), name)

    def test_statefulset(self):
        sts = self.check_common(self.objects)
        c = container(sts)
        self.assertEqual(c["image"], "registry.example.com/platform/bursar:1.2.3")
        self.assertEqual(c["imagePullPolicy"], "Always")
        self.assertEqual(sts["spec"]["template"]["spec"]["imagePullSecrets"],
                         [{"name": "regcred"}])
        self.assertEqual(c["resources"], {
            "requests": {"cpu": "2", "memory": "2Gi"},
            "limits": {"cpu": "4", "memory": "4Gi"}})
        claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
        self.assertEqual(claim["resources"]["requests"]["storage"], "50Gi")
        self.assertEqual(claim["storageClassName"], "fast-ssd")
        self.assertEqual(
            sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 45)
        f = flags(sts)
        self.assertEqual(f["sync"], "always")
        self.assertEqual(f["reservation_ttl"], "5m")
        self.assertEqual(f["shutdown_grace"], "20s")
        self.assertEqual(f["settled_retention"], "2h")

    def test_tls_and_tokens_from_secrets(self):
        sts = one(self.objects, "StatefulSet")
        f = flags(sts)
        self.assertNotIn("insecure", f)
        self.assertNotIn("allow_insecure_remote", f)
        m = mounts(sts)
        v = volumes(sts)
        for flag, volume, secret, key in (
                ("tls_cert", "tls", "bursar-server-tls", "tls.crt"),
                ("tls_key", "tls", "bursar-server-tls", "tls.key"),
                ("tls_client_ca", "client-ca", "bursar-client-ca", "ca.crt"),
                ("tokens_file", "tokens", "bursar-tokens", "tokens.yaml")):
            directory, _, file_name = f[flag].rpartition("/")
            self.assertEqual(file_name, key, flag)
            # Whole-directory mounts (no subPath), so renewed Secrets arrive.
            self.assertEqual(m[directory]["name"], volume, flag)
            self.assertNotIn("subPath", m[directory], flag)
            self.assertIs(m[directory]["readOnly"], True, flag)
            self.assertEqual(v[volume]["secret"]["secretName"], secret, flag)

    def test_http_probes_with_tls(self):
        # Kubernetes gRPC probes speak plaintext only: with TLS the probes
        # are httpGet /healthz and /readyz on the plaintext HTTP port.
        sts = one(self.objects, "StatefulSet")
        assert_http_probes(self, sts)
        # The probe timings of values.yaml stay.
        self.assertEqual(container(sts)["startupProbe"]["failureThreshold"], 60)
        self.assertEqual(container(sts)["readinessProbe"]["periodSeconds"], 5)
        forced = one(render("-f", custom_values(), "--set", "probes.mode=grpc"),
                     "StatefulSet")
        self.assertEqual(container(forced)["livenessProbe"]["grpc"],
                         {"port": 8081})
        tcp = one(render("-f", custom_values(), "--set", "probes.mode=tcp"),
                  "StatefulSet")
        self.assertEqual(container(tcp)["readinessProbe"]["tcpSocket"],
                         {"port": "grpc"})

    def test_service_monitor(self):
        sm = one(self.objects, "ServiceMonitor")
        self.assertEqual(sm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(sm["metadata"]["namespace"], "llm")
        self.assertEqual(sm["metadata"]["labels"]["release"],
                         "kube-prometheus-stack")
        self.assertEqual(sm["spec"]["endpoints"], [{
            "port": "http", "path": "/metrics", "scheme": "http",
            "interval": "15s", "scrapeTimeout": "10s"}])
        # It selects the API Service only, not the headless one (one scrape
        # per pod).
        selector = sm["spec"]["selector"]
        selected = []
        for service in of_kind(self.objects, "Service"):
            labels = service["metadata"]["labels"]
            if not matches(selector["matchLabels"], labels):
                continue
            if any(e["operator"] == "DoesNotExist" and e["key"] in labels
                   for e in selector.get("matchExpressions", [])):
                continue
            selected.append(service["metadata"]["name"])
        self.assertEqual(selected, ["budget-guard"])

    def test_inline_policies_from_store(self):
        sts = one(self.objects, "StatefulSet")
        self.assertEqual(flags(sts)["policy_source"], "store")
        # The files only seed the store: changing them must not restart.
        self.assertNotIn("checksum/policies",
                         sts["spec"]["template"]["metadata"].get(
                             "annotations") or {})
        cm = one(self.objects, "ConfigMap")
        self.assertEqual(sorted(cm["data"]), ["pricing.yaml", "routes.yaml"])
        self.assertIn("triage-small-first", cm["data"]["routes.yaml"])
        policy_check(cm, "custom-policies")

    def test_pdb_max_unavailable(self):
        pdb = one(self.objects, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)

    def test_optional_objects_can_be_turned_off(self):
        objects = render("-f", custom_values(), "--set",
                         "serviceMonitor.enabled=false",
                         "--set", "podDisruptionBudget.enabled=false",
                         "--set", "serviceAccount.create=false")
        kinds = sorted(k for k, _ in objects)
        self.assertEqual(kinds, ["ConfigMap", "Service", "Service",
                                 "StatefulSet"])
        self.assertEqual(one(objects, "StatefulSet")["spec"]["template"]
                         ["spec"]["serviceAccountName"], "default")


def notes(*extra):
    """The NOTES.txt that `helm install` would print (a client-side dry run,
    no cluster)."""
    _, out, _ = helm("install", "rel", chart_dir(), "--namespace", "llm",
                     "--dry-run=client", *extra)
    return out[out.index("NOTES:"):]


class NotesTest(unittest.TestCase):

    def test_plaintext_and_open_roles_are_warned_about(self):
        text = notes()
        self.assertIn("rel-bursar.llm.svc:8081", text)
        self.assertIn("WARNING: TLS is off", text)
        self.assertIn("WARNING: no tokens file", text)

    def test_no_warnings_with_tls_and_tokens(self):
        text = notes("-f", custom_values())
        self.assertNotIn("WARNING", text)
        self.assertIn("--tls_ca=CA.pem", text)
        self.assertIn("bursarctl policy push", text)


class RejectedValuesTest(unittest.TestCase):
    """Bad values make helm fail with a message that names the problem."""

    def assert_rejected(self, expected_message, *args):
        for command in (("template", "rel", chart_dir()),
                        ("lint", "--strict", chart_dir())):
            code, out, err = helm(*command, *args, check=False)
            self.assertNotEqual(code, 0, f"helm {command[0]} accepted {args}")
            self.assertRegex(out + err, expected_message)

    def test_wrong_type(self):
        self.assert_rejected(r"grpcPort", "--set-string",
                             "bursard.grpcPort=eighty")

    def test_unknown_enum(self):
        self.assert_rejected(r"sync", "--set", "bursard.sync=sometimes")
        self.assert_rejected(r"mode", "--set", "probes.mode=exec")

    def test_bad_duration(self):
        self.assert_rejected(r"reservationTTL", "--set",
                             "bursard.reservationTTL=ten minutes")

    def test_replicas_cannot_be_set(self):
        self.assert_rejected(r"replicas", "--set", "replicas=3")

    def test_tls_needs_a_secret(self):
        self.assert_rejected(r"existingSecret", "--set", "tls.enabled=true")

    def test_mtls_needs_tls(self):
        self.assert_rejected(r"/tls", "--set",
                             "tls.clientCASecret=ca")

    def test_policy_file_name(self):
        self.assert_rejected(r"policies", "--set-string",
                             "policies.files.pricing\\.json={}")

    def test_pdb_bound(self):
        self.assert_rejected(r"maxUnavailable", "--set",
                             "podDisruptionBudget.maxUnavailable=2")

    def test_root_user(self):
        self.assert_rejected(r"runAsNonRoot", "--set",
                             "podSecurityContext.runAsNonRoot=false")


class DockerfileTest(unittest.TestCase):
    """The image the chart runs (no image is built: no registry here)."""

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ARGS.source, "Dockerfile")) as f:
            cls.text = f.read()
        # Join continuation lines, drop comments.
        joined = re.sub(r"\\\n", " ", cls.text)
        cls.lines = [l.strip() for l in joined.splitlines()
                     if l.strip() and not l.strip().startswith("#")]

    def instructions(self, name):
        return [l[len(name):].strip() for l in self.lines
                if l.upper().startswith(name + " ")]

    def test_two_debian_12_stages(self):
        self.assertIn("ARG DEBIAN_IMAGE=debian:12", self.lines)
        stages = self.instructions("FROM")
        self.assertEqual(len(stages), 2, stages)
        for stage in stages:
            self.assertTrue(stage.startswith("${DEBIAN_IMAGE}"), stage)

    def test_built_with_the_projects_scripts(self):
        runs = " ".join(self.instructions("RUN"))
        self.assertIn("scripts/install-deps.sh", runs)
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", runs)
        self.assertIn("--target bursard bursarctl", runs)

    def test_runtime_has_both_binaries_and_exposes_both_ports(self):
        copies = [c for c in self.instructions("COPY")
                  if c.startswith("--from=build")]
        copied = " ".join(copies)
        self.assertIn("/build/server/bursard", copied)
        self.assertIn("/build/cli/bursarctl", copied)
        self.assertIn("/usr/local/bin/", copied)
        self.assertEqual(self.instructions("EXPOSE"), ["8081 8082"])
        self.assertEqual(self.instructions("ENTRYPOINT"),
                         ['["/usr/local/bin/bursard"]'])

    def test_non_root_user_matches_the_chart(self):
        users = self.instructions("USER")
        self.assertEqual(len(users), 1)
        uid = users[0].split(":")[0]
        self.assertNotIn(uid, ("0", "root"))
        with open(os.path.join(chart_dir(), "values.yaml")) as f:
            values = yaml.safe_load(f)
        self.assertEqual(int(uid), values["podSecurityContext"]["runAsUser"])
        self.assertEqual(
            users[0], f"{values['podSecurityContext']['runAsUser']}:"
                      f"{values['podSecurityContext']['runAsGroup']}")

    def test_chart_command_is_in_the_image(self):
        objects = render()
        self.assertEqual(container(one(objects, "StatefulSet"))["command"],
                         ["/usr/local/bin/bursard"])


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--helm", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--bursarctl", required=True)
    parser.add_argument("--bursard", required=True)
    parser.add_argument("--work", required=True)
    ARGS, rest = parser.parse_known_args()
    _, version, _ = helm("version", "--short")
    print(f"helm {version.strip()}", flush=True)
    unittest.main(argv=[sys.argv[0], "-v", *rest])


if __name__ == "__main__":
    main()
