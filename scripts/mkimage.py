#!/usr/bin/env python3
"""Builds a busybox image tarball with no registry: an OCI image layout
(which `ctr images import` and `podman load` read) plus a docker-style
manifest.json. The image holds /bin/busybox (busybox-static) and its applets;
its default command is a pause loop that exits on SIGTERM, so it also serves
as a pod's sandbox image.

usage: mkimage.py OUT.tar NAME[:TAG] [NAME[:TAG] ...]
"""
import hashlib
import io
import json
import sys
import tarfile

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "sleep", "cat", "ls", "ps", "echo", "true", "kill", "wait", "mkdir", "yes"]
PAUSE = ["/bin/sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"]
EPOCH = "2024-01-01T00:00:00Z"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ["bin", "dev", "etc", "proc", "sys", "tmp", "root"]:
            add(t, d, mode=0o755, kind=tarfile.DIRTYPE)
        with open(BUSYBOX, "rb") as f:
            add(t, "bin/busybox", f.read(), 0o755)
        for a in APPLETS:
            add(t, "bin/" + a, kind=tarfile.SYMTYPE, link="busybox")
        add(t, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
        add(t, "etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def full_name(name):
    """docker.io/library/NAME:TAG unless NAME already names a registry."""
    repo = name.split(":")[0]
    if "/" in repo and "." in repo.split("/")[0]:
        return name
    return "docker.io/library/" + name


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, names = sys.argv[1], sys.argv[2:]
    lay = layer()
    config = compact({
        "architecture": "amd64", "os": "linux", "created": EPOCH,
        # The title makes images built under different names distinct:
        # a runtime reports an image by id, and one id with two tags would
        # leave it to guess the name.
        "config": {"Env": ["PATH=/bin"], "Cmd": PAUSE, "WorkingDir": "/",
                   "Labels": {"org.opencontainers.image.title": names[0]}},
        "rootfs": {"type": "layers", "diff_ids": [digest(lay)]},
        "history": [{"created": EPOCH, "created_by": "scripts/mkimage.py"}],
    })
    manifest = compact({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(lay), "size": len(lay)}],
    })
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": digest(manifest), "size": len(manifest),
                            "annotations": {"io.containerd.image.name": full_name(n),
                                            "org.opencontainers.image.ref.name": full_name(n).rsplit(":", 1)[1]}}
                           for n in names]}
    blob = lambda d: "blobs/sha256/" + d[len("sha256:"):]
    docker = [{"Config": blob(digest(config)), "RepoTags": names, "Layers": [blob(digest(lay))]}]
    with tarfile.open(out, "w") as t:
        add(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for data in (lay, config, manifest):
            add(t, blob(digest(data)), data)
        add(t, "index.json", json.dumps(index).encode())
        add(t, "manifest.json", json.dumps(docker).encode())


if __name__ == "__main__":
    main()
