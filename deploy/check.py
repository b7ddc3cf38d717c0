#!/usr/bin/env python3
"""Static check of the deployment files against the dits-hub binary they run.

Every YAML file parses; every dits-hub subcommand and --flag a manifest or the compose
file passes exists (asked of `dits-hub SUBCOMMAND --help`); every DITS_HUB_* variable
they set is one the binary reads; the hub Service exposes one port over both UDP and
TCP; the hub's readiness probe is /readyz over HTTPS. Usage: check.py PATH/TO/dits-hub
"""
import glob
import os
import re
import subprocess
import sys

import yaml

here = os.path.dirname(os.path.abspath(__file__))
hub = sys.argv[1]
problems = []
helps = {}


def help_of(sub):
    if sub not in helps:
        out = subprocess.run([hub, sub, "--help"], capture_output=True, text=True)
        helps[sub] = out.stdout if out.returncode == 0 else None
    return helps[sub]


def check_args(where, args):
    if not args:
        return
    sub = args[0]
    text = help_of(sub)
    if text is None:
        problems.append(f"{where}: dits-hub has no subcommand {sub!r}")
        return
    for a in args[1:]:
        if a.startswith("--") and not re.search(re.escape(a.split("=")[0]) + r"\b", text):
            problems.append(f"{where}: `dits-hub {sub}` has no flag {a}")


def check_env(where, names):
    text = help_of("serve") or ""
    known = set(re.findall(r"env: (DITS_HUB_[A-Z_]+)", text)) | {"DITS_HUB_DATA", "DITS_HUB_CONFIG", "DITS_HUB_METADATA", "DITS_HUB_LOG"}
    for n in names:
        if n.startswith("DITS_HUB_") and n not in known:
            problems.append(f"{where}: dits-hub reads no variable {n}")


compose = yaml.safe_load(open(os.path.join(here, "compose.yaml")))
for name, svc in compose["services"].items():
    image = svc.get("image", "")
    if image.startswith("localhost/dits-hub") or image.startswith("localhost/dits-worker"):
        check_args(f"compose {name}", svc.get("command"))
        check_env(f"compose {name}", (svc.get("environment") or {}).keys())
    if not re.match(r"localhost/dits-[a-z0-9]+:dev$", image):
        problems.append(f"compose {name}: image {image!r} is not one build-images.sh makes")

docs = []
for path in sorted(glob.glob(os.path.join(here, "k8s", "*.yaml"))):
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            docs.append((os.path.basename(path), doc))
kinds = {}
for path, doc in docs:
    kinds.setdefault(doc["kind"], []).append(doc)
    spec = doc.get("spec", {})
    pod = None
    if doc["kind"] == "Deployment":
        pod = spec["template"]["spec"]
    elif doc["kind"] == "CronJob":
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    for c in (pod or {}).get("containers", []):
        where = f"{path} {doc['metadata']['name']}/{c['name']}"
        check_args(where, c.get("args"))
        check_env(where, [e["name"] for e in c.get("env", [])])
secret = [d for _, d in docs if d["kind"] == "Secret"]
for s in secret:
    check_env("secret", s.get("stringData", {}).keys())

services = [d for d in kinds.get("Service", []) if d["metadata"]["name"] == "dits-hub"]
if not services:
    problems.append("k8s: no dits-hub Service")
for s in services:
    protocols = {(p["port"], p["protocol"]) for p in s["spec"]["ports"]}
    ports = {p for p, _ in protocols}
    if len(ports) != 1 or {pr for _, pr in protocols} != {"UDP", "TCP"}:
        problems.append(f"k8s Service dits-hub: expected one port over UDP and TCP, got {protocols}")
for d in kinds.get("Deployment", []):
    if d["metadata"]["name"] != "dits-hub":
        continue
    probe = d["spec"]["template"]["spec"]["containers"][0].get("readinessProbe", {}).get("httpGet", {})
    if probe.get("path") != "/readyz" or probe.get("scheme") != "HTTPS":
        problems.append(f"k8s Deployment dits-hub: readiness probe is {probe}, expected HTTPS /readyz")

for p in problems:
    print("deploy/check.py:", p, file=sys.stderr)
if problems:
    sys.exit(1)
print(f"deploy files ok: compose ({len(compose['services'])} services), {len(docs)} Kubernetes objects, {len(helps)} dits-hub subcommands checked")
