#!/usr/bin/env python3
"""Print every PromQL expression used by the pidwarden Grafana dashboards.

One JSON object per line: {"dashboard": <uid>, "panel": <title>, "expr": <PromQL>},
with Grafana template variables replaced so the expression can be sent to
Prometheus as is. Panel targets and Prometheus annotation queries are included;
variable queries (label_values(...)) are not PromQL and are left out.

Default substitutions (override or add with --set NAME=VALUE):
    $instance -> .*          $container -> .*
    $namespace -> .*         $pod -> .*      (.* also matches the empty label
                                             of containers outside Kubernetes)
    $__rate_interval -> 1m   $__interval -> 15s   $__range -> 1h

Usage:
    python3 grafana/queries.py [--dashboards DIR] [--set NAME=VALUE ...]

Exits with status 1 if an expression still refers to a variable that has no
substitution, so a new variable cannot slip past a test that runs every query.
Standard library only.
"""

import argparse
import json
import os
import re
import sys

DEFAULTS = {
    "instance": ".*",
    "container": ".*",
    "namespace": ".*",
    "pod": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}

# $name, ${name}, ${name:format} and the deprecated [[name]] / [[name:format]].
VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<old>\w+)(?::[^\]]*)?\]\]|\$(?P<plain>\w+)"
)


def substitute(expr, mapping):
    """Replace template variables in expr; return (text, unknown variable names)."""
    unknown = []

    def repl(match):
        name = match.group("braced") or match.group("old") or match.group("plain")
        if name in mapping:
            return mapping[name]
        unknown.append(name)
        return match.group(0)

    return VARIABLE.sub(repl, expr), unknown


def panels(items):
    """Yield every panel, descending into rows (collapsed rows keep their own list)."""
    for panel in items or []:
        yield panel
        yield from panels(panel.get("panels"))


def expressions(dashboard):
    """Yield (panel title, raw expression) for every PromQL query in a dashboard."""
    for annotation in dashboard.get("annotations", {}).get("list", []):
        expr = annotation.get("expr")
        if expr:
            yield "annotation: " + annotation.get("name", ""), expr
    for panel in panels(dashboard.get("panels")):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr and not target.get("hide"):
                yield panel.get("title", ""), expr


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dashboards",
        default=os.path.join(here, "dashboards"),
        help="folder with the dashboard JSON files (default: %(default)s)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="substitute $NAME with VALUE (repeatable)",
    )
    args = parser.parse_args(argv)

    mapping = dict(DEFAULTS)
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error("--set expects NAME=VALUE, got %r" % item)
        mapping[name.lstrip("$")] = value

    failed = False
    files = sorted(f for f in os.listdir(args.dashboards) if f.endswith(".json"))
    if not files:
        print("no dashboards in %s" % args.dashboards, file=sys.stderr)
        return 1
    for filename in files:
        with open(os.path.join(args.dashboards, filename), encoding="utf-8") as f:
            dashboard = json.load(f)
        uid = dashboard.get("uid") or filename[: -len(".json")]
        for title, raw in expressions(dashboard):
            expr, unknown = substitute(raw, mapping)
            if unknown:
                failed = True
                print(
                    "%s: panel %r: no substitution for %s"
                    % (filename, title, ", ".join("$" + u for u in unknown)),
                    file=sys.stderr,
                )
            print(json.dumps({"dashboard": uid, "panel": title, "expr": expr}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
