"""Make a one-layer OCI image archive from a directory, byte for byte reproducible.

    mkimage.py --rootfs DIR --ref docker.io/local/NAME:TAG --out NAME.tar \
        [--entrypoint JSON] [--cmd JSON] [--user UID:GID] [--env K=V]... [--label K=V]... [--arch amd64]

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that
`ctr -n k8s.io images import` accepts; the index names the image in full with containerd's
`io.containerd.image.name` annotation, so no --base-name is needed. Every entry has mtime 0, owner
0:0 and a sorted place, and the layer is an uncompressed tar (its digest is its diff ID): the same
files give the same digests on every run. The manifest digest is printed on stdout.
Nothing is pulled: the files come from DIR only.
"""
import argparse
import hashlib
import io
import json
import os
import stat
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
INDEX = "application/vnd.oci.image.index.v1+json"


def _info(name, st=None):
    ti = tarfile.TarInfo(name)
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
    if st is not None:
        ti.mode = stat.S_IMODE(st.st_mode)
    return ti


def layer_tar(rootfs):
    """The directory as a tar: parents before children, names sorted, owners and times fixed."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def walk(rel):
            for name in sorted(os.listdir(os.path.join(rootfs, rel) if rel else rootfs)):
                path_rel = os.path.join(rel, name) if rel else name
                path = os.path.join(rootfs, path_rel)
                st = os.lstat(path)
                ti = _info(path_rel, st)
                if stat.S_ISLNK(st.st_mode):
                    ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, os.readlink(path), 0o777
                    tar.addfile(ti)
                elif stat.S_ISDIR(st.st_mode):
                    ti.type = tarfile.DIRTYPE
                    tar.addfile(ti)
                    walk(path_rel)
                elif stat.S_ISREG(st.st_mode):
                    ti.size = st.st_size
                    with open(path, "rb") as f:
                        tar.addfile(ti, f)
                else:
                    raise SystemExit("mkimage: %s: only files, folders and symlinks go in an image" % path)
        walk("")
    return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def build(args):
    layer_digest, layer = blob(layer_tar(args.rootfs))
    config = {
        "architecture": args.arch, "os": "linux",
        "config": {k: v for k, v in (("Entrypoint", args.entrypoint), ("Cmd", args.cmd), ("User", args.user),
                                     ("Env", args.env), ("Labels", dict(kv.split("=", 1) for kv in args.label)),
                                     ("WorkingDir", "/")) if v},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "nimguard mkimage.py (from local files)"}],
    }
    config_digest, config_data = blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_data)},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": len(layer)}],
    }
    manifest_digest, manifest_data = blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    tag = args.ref.rsplit(":", 1)[1] if ":" in args.ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": manifest_digest, "size": len(manifest_data),
                       "platform": {"architecture": args.arch, "os": "linux"},
                       "annotations": {"io.containerd.image.name": args.ref,
                                       "org.opencontainers.image.ref.name": tag}}],
    }
    files = [("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
             ("index.json", json.dumps(index, sort_keys=True, separators=(",", ":")).encode())]
    for digest, data in sorted([(layer_digest, layer), (config_digest, config_data),
                                (manifest_digest, manifest_data)]):
        files.append(("blobs/sha256/" + digest.split(":", 1)[1], data))
    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("blobs", "blobs/sha256"):
            ti = _info(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        for name, data in files:
            ti = _info(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    os.replace(tmp, args.out)
    return manifest_digest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rootfs", required=True, help="folder whose content becomes the image's only layer")
    ap.add_argument("--ref", required=True, help="full image name, e.g. docker.io/local/fakenim:1")
    ap.add_argument("--out", required=True, help="archive to write")
    ap.add_argument("--entrypoint", type=json.loads, default=None, help='JSON list, e.g. ["/pause"]')
    ap.add_argument("--cmd", type=json.loads, default=None, help='JSON list, e.g. ["serve"]')
    ap.add_argument("--user", default="", help="default UID:GID")
    ap.add_argument("--env", action="append", default=[], help="K=V, repeatable")
    ap.add_argument("--label", action="append", default=[], help="K=V, repeatable")
    ap.add_argument("--arch", default="amd64", help="GOARCH of the binaries inside")
    args = ap.parse_args(argv)
    print(build(args))


if __name__ == "__main__":
    sys.exit(main())
