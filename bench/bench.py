#!/usr/bin/env python3
"""Scrape-cost benchmark: pidwarden-exporter against prometheus-process-exporter.

Driven by scripts/bench.sh, which starts the containers and the exporters.
Python standard library only.

Subcommands:

  wait    block (bounded) until the benchmark containers hold the expected
          number of processes, counted from their cgroups' cgroup.procs
  run     warm up, then scrape every target in turn for N rounds, measure
          CPU per scrape (utime+stime from /proc/<pid>/stat), scrape latency
          and memory (VmRSS, VmHWM), check that each scrape actually saw the
          processes, and append one JSON record per target to a JSON-lines file
  report  turn the JSON-lines file into a markdown table plus a description
          of the machine
  fake    (--cgroups) stand in for Docker: create N fake Docker container
          cgroups (pids, memory: /sys/fs/cgroup/<ctrl>/pidwarden-test-bench-*/
          docker/<id>), start the container script in each, write the ids,
          wait for SIGTERM, then kill and reap everything and remove the
          cgroups; it is a child subreaper, so no orphan is left unreaped
"""

import argparse
import http.client
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timezone

CLK_TCK = os.sysconf("SC_CLK_TCK")
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# --------------------------------------------------------------------------
# /proc and cgroup readers


def proc_cpu_seconds(pid):
    """utime + stime of the whole process (all threads, live and exited)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    utime = int(fields[11])
    stime = int(fields[12])
    return (utime + stime) / CLK_TCK


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def proc_threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def cgroup_dir_of(pid):
    """The directory under /sys/fs/cgroup whose cgroup.procs lists `pid`.

    Prefers the v1 pids controller, falls back to the unified (v2) hierarchy.
    """
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f]
    for hid, ctrls, path in lines:
        if "pids" in ctrls.split(","):
            return os.path.join("/sys/fs/cgroup/pids", path.lstrip("/"))
    for hid, ctrls, path in lines:
        if hid == "0" and ctrls == "":
            for base in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                d = os.path.join(base, path.lstrip("/"))
                if os.path.exists(os.path.join(d, "cgroup.procs")):
                    return d
    raise RuntimeError(f"no cgroup found for pid {pid}")


def count_cgroup_procs(d):
    """Processes in a cgroup subtree."""
    n = 0
    for root, _dirs, files in os.walk(d):
        if "cgroup.procs" in files:
            try:
                with open(os.path.join(root, "cgroup.procs")) as f:
                    n += sum(1 for line in f if line.strip())
            except OSError:
                pass
    return n


def host_process_count():
    return sum(1 for e in os.listdir("/proc") if e.isdigit())


def read_ids(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def container_init_pid(cid):
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", cid],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(out.stdout.strip())


# --------------------------------------------------------------------------
# exposition parsing


def parse_exposition(text):
    """Yield (name, labels dict, value) for every sample line."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_part, value_part = rest.rsplit("}", 1)
            labels = dict(LABEL_RE.findall(labels_part))
        else:
            name, value_part = line.split(" ", 1)
            labels = {}
        value = value_part.strip().split(" ")[0]
        try:
            yield name, labels, float(value)
        except ValueError:
            continue


def count_seen(kind, text, ids):
    """Processes the exporter reported: (seen in the benchmark containers, extra info)."""
    if kind == "pidwarden":
        total = 0.0
        matched = 0
        self_ms = None
        for name, labels, value in parse_exposition(text):
            if name == "pidwarden_container_processes" and labels.get("id") in ids:
                total += value
                matched += 1
            elif name == "pidwarden_scrape_duration_seconds":
                self_ms = value * 1000.0
        return int(total), {"containers_matched": matched, "self_reported_ms": self_ms}
    # process-exporter: every process on the host grouped by comm
    total = 0.0
    sleep = 0.0
    groups = 0
    for name, labels, value in parse_exposition(text):
        if name.endswith("namegroup_num_procs"):
            total += value
            groups += 1
            if labels.get("groupname") == "sleep":
                sleep += value
    return int(total), {"sleep_group": int(sleep), "groups": groups}


# --------------------------------------------------------------------------
# scraping


def scrape(url, timeout):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request("GET", u.path or "/", headers={"Accept": "text/plain"})
        resp = conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t0
    finally:
        conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{url}: HTTP {resp.status}: {body[:200]!r}")
    return elapsed, body.decode("utf-8", "replace")


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


# --------------------------------------------------------------------------
# subcommands


def cmd_wait(args):
    if args.dirs_file:
        dirs = read_ids(args.dirs_file)
    else:
        dirs = [cgroup_dir_of(container_init_pid(cid)) for cid in read_ids(args.ids_file)]
    deadline = time.monotonic() + args.timeout
    n = 0
    while True:
        n = sum(count_cgroup_procs(d) for d in dirs)
        if n >= args.expect:
            print(f"containers hold {n} processes (expected {args.expect})")
            return 0
        if time.monotonic() >= deadline:
            print(
                f"timeout: containers hold {n} processes, expected {args.expect}",
                file=sys.stderr,
            )
            return 1
        time.sleep(1.0)


def cmd_fake(args):
    import ctypes
    import hashlib
    import shutil
    import signal
    import tempfile

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "PR_SET_CHILD_SUBREAPER")
    name = f"pidwarden-test-bench-{os.getpid()}"
    tops = [f"/sys/fs/cgroup/{c}/{name}" for c in ("pids", "memory")]
    busybox = shutil.which("busybox")
    if not busybox:
        print("busybox not found", file=sys.stderr)
        return 1
    bindir = tempfile.mkdtemp(prefix="pidwarden-bench-bin.")
    for applet in ("sh", "sleep"):
        os.symlink(busybox, os.path.join(bindir, applet))
    with open(args.script_file) as f:
        script = f.read()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    children = []
    try:
        for top in tops:
            os.makedirs(os.path.join(top, "docker"))
        ids, dirs = [], []
        for i in range(args.containers):
            cid = hashlib.sha256(f"{name}-{i}".encode()).hexdigest()
            leaves = [os.path.join(top, "docker", cid) for top in tops]
            for d in leaves:
                os.mkdir(d)

            def move_in(leaves=leaves):
                for d in leaves:
                    with open(os.path.join(d, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))

            children.append(
                subprocess.Popen(
                    [os.path.join(bindir, "sh"), "-c", script],
                    preexec_fn=move_in,
                    env={"PATH": f"{bindir}:/usr/bin:/bin"},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            ids.append(cid)
            dirs.append(leaves[0])
        with open(args.dirs_file + ".tmp", "w") as f:
            f.write("\n".join(dirs) + "\n")
        os.rename(args.dirs_file + ".tmp", args.dirs_file)
        with open(args.ids_file + ".tmp", "w") as f:
            f.write("\n".join(ids) + "\n")
        os.rename(args.ids_file + ".tmp", args.ids_file)
        print(f"{len(ids)} fake containers started under {name}", file=sys.stderr)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = set()
            for top in tops:
                for root, _dirs, files in os.walk(top):
                    try:
                        with open(os.path.join(root, "cgroup.procs")) as f:
                            pids.update(int(x) for x in f.read().split())
                    except OSError:
                        pass
            if not pids:
                break
            for pid in pids:
                try:
                    fd = os.pidfd_open(pid)
                except OSError:
                    continue
                try:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                except OSError:
                    pass
                os.close(fd)
            while True:
                try:
                    if os.waitpid(-1, os.WNOHANG)[0] == 0:
                        break
                except ChildProcessError:
                    break
            time.sleep(0.1)
        while time.monotonic() < deadline:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    time.sleep(0.1)
                    continue
            except ChildProcessError:
                break
        for top in tops:
            for root, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(root)
                except OSError as e:
                    print(f"cannot remove {root}: {e}", file=sys.stderr)
        shutil.rmtree(bindir, ignore_errors=True)
    return 0


def parse_target(spec):
    # kind,pid,url,name (the name may hold anything but is last)
    kind, pid, url, name = spec.split(",", 3)
    if kind not in ("pidwarden", "process-exporter"):
        raise argparse.ArgumentTypeError(f"unknown target kind {kind}")
    return {"name": name, "kind": kind, "url": url, "pid": int(pid)}


def time_snapshot(binary, runs, extra_args=()):
    """Wall and CPU time of `pidwarden-exporter snapshot` (one collection, then exit)."""
    walls, cpus = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen([binary, "snapshot", *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _pid, status, ru = os.wait4(p.pid, 0)
        walls.append((time.perf_counter() - t0) * 1000.0)
        cpus.append((ru.ru_utime + ru.ru_stime) * 1000.0)
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            return {"error": f"snapshot exited with {p.returncode}"}
    return {
        "runs": runs,
        "wall_ms_p50": statistics.median(walls),
        "cpu_ms_p50": statistics.median(cpus),
        "max_rss_kib": ru.ru_maxrss,
    }


def cmd_run(args):
    ids = set(read_ids(args.ids_file))
    targets = args.target
    expected = args.containers * args.procs
    expected_sleeps = args.containers * (args.procs - 1)

    def check_alive():
        for t in targets:
            if not os.path.exists(f"/proc/{t['pid']}"):
                raise RuntimeError(f"{t['name']} (pid {t['pid']}) is not running")

    # warm-up: also proves every endpoint answers
    for _ in range(args.warmup):
        for t in targets:
            scrape(t["url"], args.timeout)
            time.sleep(args.interval)

    if args.every > 0:
        return run_scheduled(args, ids, targets, expected, expected_sleeps, check_alive)

    samples = {t["name"]: [] for t in targets}
    seen = {t["name"]: [] for t in targets}
    extra = {t["name"]: [] for t in targets}
    sizes = {t["name"]: 0 for t in targets}
    series = {t["name"]: 0 for t in targets}
    host_counts = []
    check_alive()
    load0 = os.getloadavg()[0]
    cpu0 = {t["name"]: proc_cpu_seconds(t["pid"]) for t in targets}
    t_start = time.monotonic()
    for r in range(args.rounds):
        for t in targets:
            host_counts.append(host_process_count())
            elapsed, body = scrape(t["url"], args.timeout)
            samples[t["name"]].append(elapsed * 1000.0)
            n, info = count_seen(t["kind"], body, ids)
            seen[t["name"]].append(n)
            extra[t["name"]].append(info)
            sizes[t["name"]] = len(body.encode())
            series[t["name"]] = sum(
                1 for line in body.splitlines() if line and not line.startswith("#")
            )
            time.sleep(args.interval)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    wall = time.monotonic() - t_start
    cpu1 = {t["name"]: proc_cpu_seconds(t["pid"]) for t in targets}
    check_alive()

    records = [
        make_record(args, t, samples, seen, extra, sizes, series, host_counts, wall, load0,
                    cpu1[t["name"]] - cpu0[t["name"]], ids, expected, expected_sleeps)
        for t in targets
    ]
    return finish_run(args, records, ids)


GROUP_MEMORY_RE = re.compile(r"group memory refreshed(.*?)processes=(\d+).*?cpu_ms=([0-9.]+)")


def group_memory_refreshes(log_dir, target_name):
    """(processes, cpu ms, per scrape) of each group-memory refresh in a
    pidwarden exporter's log (`<log_dir>/pidwarden-<mode>.log`, debug lines).
    `per scrape`: the line is one scrape's refresh of the containers due
    (it names `containers=`), not a refresh of every container every 30 s
    (the exporters before `--group-memory-interval`)."""
    m = re.search(r"\((\w+)\)", target_name)
    if not log_dir or not m:
        return []
    path = os.path.join(log_dir, f"pidwarden-{m.group(1)}.log")
    try:
        with open(path, errors="replace") as f:
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    except OSError:
        return []
    return [(int(p), float(c), "containers=" in pre) for pre, p, c in GROUP_MEMORY_RE.findall(text)]


def finish_run(args, records, ids):
    for rec in records:
        if rec["kind"] == "pidwarden":
            refreshes = group_memory_refreshes(args.log_dir, rec["target"])
            if refreshes:
                # the first refresh is the exporter's first scrape (warm-up, every
                # container first seen): left out, stated apart
                later = refreshes[1:] or refreshes
                rec["group_memory_refreshes"] = len(refreshes)
                rec["group_memory_first_processes"] = refreshes[0][0]
                rec["group_memory_first_cpu_ms"] = refreshes[0][1]
                if all(per for _, _, per in refreshes):
                    # one line per scrape, each reading the containers due: the
                    # mean is the refresh's CPU per scrape
                    rec["group_memory_cpu_ms_per_scrape"] = statistics.mean(c for _, c, _ in later)
                    rec["group_memory_processes_per_scrape"] = statistics.mean(p for p, _, _ in later)
                else:
                    rec["group_memory_processes_p50"] = int(statistics.median(p for p, _, _ in later))
                    rec["group_memory_cpu_ms_p50"] = statistics.median(c for _, c, _ in later)
    if args.snapshot_bin:
        snap = time_snapshot(args.snapshot_bin, args.snapshot_runs, args.snapshot_arg)
        for rec in records:
            if rec["kind"] == "pidwarden":
                rec["snapshot"] = snap

    with open(args.out, "a") as f:
        for rec in records:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    print(scenario_table(records))
    bad = [r["target"] for r in records if not r["saw_all"]]
    if bad:
        print(f"ERROR: these exporters did not see all processes: {', '.join(bad)}", file=sys.stderr)
        return 2
    return 0



def make_record(args, t, samples, seen, extra, sizes, series, host_counts, wall, load0,
                cpu_s, ids, expected, expected_sleeps):
    """One JSON record for a target: CPU per scrape over the window, latency, memory, coverage."""
    name = t["name"]
    lat = samples[name]
    rec = {
        "scenario": args.scenario,
        "containers": args.containers,
        "procs_per_container": args.procs,
        "expected_processes": expected,
        "expected_sleeps": expected_sleeps,
        "host_processes_median": int(statistics.median(host_counts)),
        "target": name,
        "kind": t["kind"],
        "scrapes": len(lat),
        "interval_s": args.every if args.every > 0 else args.interval,
        "schedule": "every" if args.every > 0 else "in-turn",
        "wall_s": wall,
        "loadavg_1m_start": load0,
        "loadavg_1m_end": os.getloadavg()[0],
        "cpu_ms_per_scrape": cpu_s * 1000.0 / len(lat),
        "cpu_total_s": cpu_s,
        "latency_ms_p50": statistics.median(lat),
        "latency_ms_p90": percentile(lat, 90),
        "latency_ms_max": max(lat),
        "vm_rss_kib": proc_status_kib(t["pid"], "VmRSS"),
        "vm_hwm_kib": proc_status_kib(t["pid"], "VmHWM"),
        "threads": proc_threads(t["pid"]),
        "body_bytes": sizes[name],
        "series": series[name],
        "seen_min": min(seen[name]),
        "seen_max": max(seen[name]),
    }
    if t["kind"] == "pidwarden":
        rec["containers_matched_min"] = min(e["containers_matched"] for e in extra[name])
        selfs = [e["self_reported_ms"] for e in extra[name] if e["self_reported_ms"] is not None]
        rec["self_reported_ms_p50"] = statistics.median(selfs) if selfs else None
        rec["saw_all"] = rec["seen_min"] >= expected and rec["containers_matched_min"] == len(ids)
    else:
        rec["sleep_group_min"] = min(e["sleep_group"] for e in extra[name])
        rec["groups"] = extra[name][-1]["groups"]
        rec["saw_all"] = rec["sleep_group_min"] >= expected_sleeps
    return rec


def run_scheduled(args, ids, targets, expected, expected_sleeps, check_alive):
    """Scrapes as Prometheus does: each target on its own clock, once every
    `--every` seconds, the targets' ticks spread over the interval (so one
    exporter's scrape does not land on another's). CPU per scrape = the
    exporter's whole utime+stime over `rounds` intervals (from just before its
    first measured scrape to one interval after its last: background work
    between scrapes included) divided by the scrapes. Also records the CPU
    spent inside the scrapes (read just before and after each) and, for
    pidwarden, each scrape's CPU, so a scrape that did periodic work shows."""
    import threading

    n = len(targets)
    samples = {t["name"]: [] for t in targets}
    seen = {t["name"]: [] for t in targets}
    extra = {t["name"]: [] for t in targets}
    sizes = {t["name"]: 0 for t in targets}
    series = {t["name"]: 0 for t in targets}
    per_scrape = {t["name"]: [] for t in targets}
    window = {}
    host_counts = []
    errors = []
    check_alive()
    load0 = os.getloadavg()[0]
    t0 = time.monotonic() + 1.0

    def worker(i, t):
        name = t["name"]
        start = t0 + i * args.every / n
        try:
            for r in range(args.rounds):
                due = start + r * args.every
                time.sleep(max(0.0, due - time.monotonic()))
                c_before = proc_cpu_seconds(t["pid"])
                if r == 0:
                    window[name] = [c_before, None]
                host_counts.append(host_process_count())
                elapsed, body = scrape(t["url"], args.timeout)
                c_after = proc_cpu_seconds(t["pid"])
                samples[name].append(elapsed * 1000.0)
                per_scrape[name].append((c_after - c_before) * 1000.0)
                nseen, info = count_seen(t["kind"], body, ids)
                seen[name].append(nseen)
                extra[name].append(info)
                sizes[name] = len(body.encode())
                series[name] = sum(1 for line in body.splitlines() if line and not line.startswith("#"))
            end = start + args.rounds * args.every
            time.sleep(max(0.0, end - time.monotonic()))
            window[name][1] = proc_cpu_seconds(t["pid"])
        except Exception as e:  # noqa: BLE001 - reported after the join
            errors.append(f"{name}: {e}")

    threads = [threading.Thread(target=worker, args=(i, t), daemon=True) for i, t in enumerate(targets)]
    print(f"  {args.rounds} scrapes per exporter, one every {args.every:g} s "
          f"(~{args.rounds * args.every / 60:.1f} min)", file=sys.stderr)
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t0
    if errors:
        raise RuntimeError("; ".join(errors))
    check_alive()
    records = []
    for t in targets:
        name = t["name"]
        c0, c1 = window[name]
        rec = make_record(args, t, samples, seen, extra, sizes, series, host_counts, wall, load0,
                          c1 - c0, ids, expected, expected_sleeps)
        inside = sum(per_scrape[name])
        rec["cpu_ms_in_scrapes_per_scrape"] = inside / len(per_scrape[name])
        rec["cpu_ms_between_scrapes_per_scrape"] = rec["cpu_ms_per_scrape"] - rec["cpu_ms_in_scrapes_per_scrape"]
        if t["kind"] == "pidwarden":
            rec["cpu_ms_each_scrape"] = [round(x, 1) for x in per_scrape[name]]
        records.append(rec)
    return finish_run(args, records, ids)

def cmd_profile(args):
    """Where a scrape's time goes: strace syscall counts and a perf CPU profile.

    Runs outside the measured rounds (tracing slows the target down)."""
    import signal

    def traced(cmd, out_note):
        tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let the tracer attach
        lat = []
        try:
            for _ in range(args.scrapes):
                elapsed, _body = scrape(args.url, args.timeout)
                lat.append(elapsed * 1000.0)
                time.sleep(args.interval)
        finally:
            tracer.send_signal(signal.SIGINT)
            try:
                _out, err = tracer.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                tracer.kill()
                _out, err = tracer.communicate()
        print(f"{out_note}: {args.scrapes} scrapes, latency p50 {statistics.median(lat):.1f} ms while traced",
              file=sys.stderr)
        return err.decode("utf-8", "replace")

    header = f"# {args.scrapes} scrapes of pid {args.pid} ({args.url})\n"
    if args.strace_out:
        log = args.strace_out + ".raw"
        err = traced(["strace", "-c", "-f", "-o", log, "-p", str(args.pid)], "strace")
        text = open(log).read() if os.path.exists(log) else err
        if os.path.exists(log):
            os.unlink(log)
        with open(args.strace_out, "w") as f:
            f.write(header + f"# strace -c -f: syscall totals over all {args.scrapes} scrapes\n" + text)
    if args.perf_out:
        data = args.perf_out + ".data"
        traced(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-o", data,
                "-p", str(args.pid)], "perf")
        rep = subprocess.run(
            ["perf", "report", "-i", data, "--stdio", "--no-children", "--percent-limit", "0.7",
             "--sort", "dso,symbol", "-g", "none"],
            capture_output=True, text=True, timeout=300,
        ).stdout
        inc = subprocess.run(
            ["perf", "report", "-i", data, "--stdio", "--children", "--percent-limit", "3",
             "--sort", "symbol", "-g", "none"],
            capture_output=True, text=True, timeout=300,
        ).stdout
        os.unlink(data)
        with open(args.perf_out, "w") as f:
            f.write(header + "# perf record -e cpu-clock -g; self time by dso,symbol\n" + rep
                    + "\n# inclusive (children) time by symbol\n" + inc)
    return 0


# --------------------------------------------------------------------------
# reporting


def mib(kib):
    return f"{kib / 1024.0:.1f}" if kib is not None else "?"


def seen_cell(r):
    if r["kind"] == "pidwarden":
        s = f"{r['seen_min']}" if r["seen_min"] == r["seen_max"] else f"{r['seen_min']}–{r['seen_max']}"
        return f"{s} / {r['expected_processes']}"
    # process-exporter reports the whole host: show the sleep group against the sleeps started
    return f"{r['sleep_group_min']} sleep / {r['expected_sleeps']} (host total {r['seen_max']})"


def scenario_table(records):
    lines = [
        "| scenario | exporter | processes seen / expected | CPU ms/scrape | p50 ms | p90 ms | VmRSS MiB | VmHWM MiB | body KiB | series |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            "| {sc} | {t} | {seen} | {cpu:.1f} | {p50:.1f} | {p90:.1f} | {rss} | {hwm} | {kb:.0f} | {ser} |".format(
                sc=r["scenario"],
                t=r["target"],
                seen=seen_cell(r),
                cpu=r["cpu_ms_per_scrape"],
                p50=r["latency_ms_p50"],
                p90=r["latency_ms_p90"],
                rss=mib(r["vm_rss_kib"]),
                hwm=mib(r["vm_hwm_kib"]),
                kb=r["body_bytes"] / 1024.0,
                ser=r["series"],
            )
        )
    return "\n".join(lines)


def ratio_lines(records):
    out = []
    by_scn = {}
    for r in records:
        by_scn.setdefault(r["scenario"], []).append(r)
    for scn, recs in by_scn.items():
        if "loadavg_1m_start" in recs[0]:
            out.append(
                f"- {scn}: 1-minute load average {recs[0]['loadavg_1m_start']:.1f} at the start of the rounds,"
                f" {recs[0]['loadavg_1m_end']:.1f} at the end ({recs[0]['wall_s']:.0f} s)"
            )
        pw = [r for r in recs if r["kind"] == "pidwarden"]
        pe = [r for r in recs if r["kind"] == "process-exporter"]
        if not pw:
            continue
        p = pw[0]
        for o in pe:
            if p["cpu_ms_per_scrape"] > 0:
                ratio = o["cpu_ms_per_scrape"] / p["cpu_ms_per_scrape"]
                out.append(
                    f"- {scn}: {o['target']} uses {ratio:.1f}× the CPU per scrape of {p['target']}"
                    f" ({o['cpu_ms_per_scrape']:.1f} ms vs {p['cpu_ms_per_scrape']:.1f} ms)"
                )
        for r in recs:
            if r.get("schedule") == "every":
                out.append(
                    f"- {scn}: {r['target']}: {r['scrapes']} scrapes one every {r['interval_s']:g} s;"
                    f" {r['cpu_ms_in_scrapes_per_scrape']:.1f} ms CPU per scrape inside the scrapes,"
                    f" {r['cpu_ms_between_scrapes_per_scrape']:.1f} ms between them"
                )
            if r.get("group_memory_cpu_ms_per_scrape") is not None:
                out.append(
                    f"- {scn}: {r['target']}: group-memory refresh (each container once per"
                    f" --group-memory-interval, after each scrape's answer):"
                    f" {r['group_memory_cpu_ms_per_scrape']:.2f} ms CPU per scrape on average"
                    f" ({r['group_memory_processes_per_scrape']:.0f} processes, {r['group_memory_refreshes'] - 1}"
                    f" scrapes); the first scrape's, every container first seen (left out):"
                    f" {r['group_memory_first_cpu_ms']:.1f} ms for {r['group_memory_first_processes']} processes"
                )
            if r.get("group_memory_cpu_ms_p50") is not None:
                out.append(
                    f"- {scn}: {r['target']}: group-memory refresh (every 30 s, inside a scrape):"
                    f" {r['group_memory_cpu_ms_p50']:.1f} ms CPU for {r['group_memory_processes_p50']}"
                    f" processes (median of {r['group_memory_refreshes']} refreshes, the first left out)"
                )
        if p.get("self_reported_ms_p50") is not None:
            out.append(
                f"- {scn}: pidwarden_scrape_duration_seconds (self-reported collection time) p50 = "
                f"{p['self_reported_ms_p50']:.1f} ms"
            )
        snap = p.get("snapshot")
        if snap and "error" not in snap:
            out.append(
                f"- {scn}: `pidwarden-exporter snapshot` (one collection, process start to exit, "
                f"{snap['runs']} runs): wall p50 {snap['wall_ms_p50']:.0f} ms, CPU p50 {snap['cpu_ms_p50']:.0f} ms,"
                f" max RSS {mib(snap['max_rss_kib'])} MiB"
            )
    return out


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.rstrip()
    except Exception as e:  # noqa: BLE001 - best effort description
        return f"? ({e})"


def machine_description():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    fs = sh("stat -fc %T /sys/fs/cgroup")
    if fs == "cgroup2fs":
        cg = "v2 (unified)"
    elif os.path.isdir("/sys/fs/cgroup/unified"):
        cg = "v1 hybrid (controllers on v1, empty cgroup2 at /sys/fs/cgroup/unified)"
    else:
        cg = "v1"
    return [
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu}, `nproc` = {sh('nproc')}",
        f"- memory (`free -g`):\n\n```\n{sh('free -g')}\n```\n",
        f"- kernel: {platform.release()}, pid_max {sh('cat /proc/sys/kernel/pid_max')}",
        f"- cgroup: {cg}",
        f"- Docker: {sh('docker version -f {{.Server.Version}}')}",
        f"- process-exporter: {sh('prometheus-process-exporter -version 2>&1 | head -1')}",
        "- pidwarden-exporter: "
        + os.environ.get("PIDWARDEN_BENCH_BUILD", f"commit {sh('git rev-parse --short HEAD')}"),
    ]


def cmd_report(args):
    with open(args.input) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        print("no results", file=sys.stderr)
        return 1
    rounds = records[0]["scrapes"]
    text = [
        "# Benchmark results",
        "",
        "Produced by `scripts/bench.sh`; see bench/README.md for the method.",
        "",
        "## Machine",
        "",
        *machine_description(),
        "",
        "## Figures",
        "",
        f"{rounds} scrapes per exporter per scenario after the warm-up scrapes; exporters scraped in turn"
        " with a pause between scrapes, or (`--every`) each on its own clock as Prometheus does. CPU = utime+stime of the exporter process over the measured"
        " scrapes, divided by the number of scrapes. Latency = request sent to last byte read,"
        " uncompressed text format, new connection per scrape. Memory: VmRSS after the run, VmHWM = peak.",
        "",
        scenario_table(records),
        "",
        *ratio_lines(records),
        "",
        "Targets (200 × 50 = 10,000 processes, scraped once every 15 s, `--every 15`): CPU per scrape"
        " ≤ 5 ms (the exporter's whole CPU over the window / the scrapes) and ≥ 500× less than"
        " process-exporter with `-gather-smaps=false -threads=false` side by side, p50 ≤ 10 ms,"
        " RSS ≤ 30 MiB; every process in its first minute (`--young`) ≤ 20 ms per scrape.",
        "",
    ]
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            text += ["## Notes", "", f.read().strip(), ""]
    out = "\n".join(text)
    with open(args.output, "w") as f:
        f.write(out)
    print(out)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("wait", help="wait until the containers hold the expected processes")
    w.add_argument("--ids-file")
    w.add_argument("--dirs-file", help="cgroup directories to count instead of the containers' (--cgroups)")
    w.add_argument("--expect", type=int, required=True)
    w.add_argument("--timeout", type=float, default=180.0)
    w.set_defaults(func=cmd_wait)

    r = sub.add_parser("run", help="scrape and measure")
    r.add_argument("--scenario", required=True)
    r.add_argument("--ids-file", required=True)
    r.add_argument("--containers", type=int, required=True)
    r.add_argument("--procs", type=int, required=True)
    r.add_argument("--target", type=parse_target, action="append", required=True,
                   help="kind,pid,url,name where kind is pidwarden or process-exporter")
    r.add_argument("--rounds", type=int, default=30)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--interval", type=float, default=0.5)
    r.add_argument("--every", type=float, default=0.0,
                   help="scrape each target on its own clock once every SECS, as Prometheus does"
                        " (0: in turn, --interval apart)")
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("--log-dir", help="where the pidwarden exporters' logs are (pidwarden-<mode>.log)")
    r.add_argument("--snapshot-bin", help="time `<bin> snapshot` after the scrapes")
    r.add_argument("--snapshot-runs", type=int, default=3)
    r.add_argument("--snapshot-arg", action="append", default=[], help="an argument for `<bin> snapshot`")
    r.add_argument("--out", required=True, help="JSON-lines file to append to")
    r.set_defaults(func=cmd_run)

    f = sub.add_parser("profile", help="strace/perf a target over a few scrapes")
    f.add_argument("--pid", type=int, required=True)
    f.add_argument("--url", required=True)
    f.add_argument("--scrapes", type=int, default=10)
    f.add_argument("--interval", type=float, default=0.5)
    f.add_argument("--timeout", type=float, default=120.0)
    f.add_argument("--strace-out")
    f.add_argument("--perf-out")
    f.set_defaults(func=cmd_profile)

    k = sub.add_parser("fake", help="fake Docker container cgroups instead of Docker (--cgroups)")
    k.add_argument("--containers", type=int, required=True)
    k.add_argument("--script-file", required=True)
    k.add_argument("--ids-file", required=True)
    k.add_argument("--dirs-file", required=True)
    k.set_defaults(func=cmd_fake)

    p = sub.add_parser("report", help="write the markdown report")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--notes", help="markdown file appended under ## Notes")
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
