"""Inception weights for FID (docs/fid.md): which file each mode needs, where it is found, and loading it.

``--inception PATH``, else ``$MASKGIT_INCEPTION``, else the file clean-fid itself would load from its cache
(clean: ``/tmp/inception-2015-12-05.pt``; legacy_pytorch:
``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), else a download into that cache - tried
only when a half-second TCP probe of the download host succeeds and ``MASKGIT_NO_DOWNLOAD`` is not 1.
Otherwise one :class:`MaskgitError` line names the file, its sha256 and where to put it. The weights are
resolved before torch or clean-fid is imported, so that error comes back at once: they (and weights, which imports
torch) are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import sys
import tempfile
import threading
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maskgit_cli.choices import FID_MODES
from maskgit_cli.errors import MaskgitError
from maskgit_cli.progress import log

ENV_INCEPTION = "MASKGIT_INCEPTION"
ENV_NO_DOWNLOAD = "MASKGIT_NO_DOWNLOAD"
PROBE_TIMEOUT_S = 0.5
DOWNLOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class InceptionFile:
    """One mode's Inception weights file, as clean-fid looks for it."""

    mode: str
    filename: str
    url: str
    sha256: str | None  # None = no authoritative checksum known
    size: int | None
    extractor: str  # the feature extractor's id, stored in statistics files

    def cache_path(self) -> Path:
        if self.mode == "clean":
            # cleanfid.features.feature_extractor: path = "./" on Windows else "/tmp" (hardcoded)
            folder = Path("./") if platform.system() == "Windows" else Path(CLEAN_CACHE_DIR)
            return folder / self.filename
        # cleanfid.inception_pytorch.fid_inception_v3 -> torch.hub.load_state_dict_from_url -> hub/checkpoints
        return _torch_hub_dir() / "checkpoints" / self.filename


CLEAN_CACHE_DIR = "/tmp"  # where clean-fid downloads its TorchScript Inception (tests point it elsewhere)

INCEPTION_FILES = {
    # cleanfid/downloads_helper.py: inception_url. No checksum is published by clean-fid or NVIDIA.
    "clean": InceptionFile(
        "clean",
        "inception-2015-12-05.pt",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        None,
        None,
        "clean-fid torchscript inception-2015-12-05 pool3",
    ),
    # cleanfid/inception_pytorch.py: FID_WEIGHTS_URL (from pytorch-fid). torch.hub checks that the sha256 starts
    # with the 6726825d in the file name; the full digest and size are the ones pinned by several public projects.
    "legacy_pytorch": InceptionFile(
        "legacy_pytorch",
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        95_628_359,
        "pytorch-fid pt_inception-2015-12-05 pool3",
    ),
}


def _torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch (same rules: TORCH_HOME, XDG_CACHE_HOME, ~/.cache)."""
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir())
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return Path(os.path.expanduser(torch_home)) / "hub"


def inception_file(mode: str) -> InceptionFile:
    """The weights file of FID ``mode``; a one-line error for an unknown mode."""
    if mode not in INCEPTION_FILES:
        raise MaskgitError(f"--mode {mode}: expected one of {', '.join(FID_MODES)}")
    return INCEPTION_FILES[mode]


def _network_ok(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Can we open a TCP connection to the URL's host within ``timeout``? (bounded even if DNS hangs)"""
    host = urllib.parse.urlparse(url).hostname
    ok: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                ok.append(True)
        except Exception:  # offline, DNS failure, a test that forbids connections
            pass

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe(spec: InceptionFile) -> str:
    checksum = f"sha256 {spec.sha256}" if spec.sha256 else "sha256 unknown: none is published"
    return f"{spec.filename} ({checksum}; from {spec.url})"


def _download(spec: InceptionFile, dest: Path) -> None:
    from maskgit_cli.weights import atomic_path  # lazy: the module docstring says why

    log(f"downloading {spec.url} -> {dest}")
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
            if spec.sha256 and sha256_file(tmp) != spec.sha256:
                raise MaskgitError(f"downloaded {spec.url} but its sha256 is not {spec.sha256}")
    except OSError as e:
        raise MaskgitError(
            f"could not download {_describe(spec)} to {dest} ({type(e).__name__}: {e}); "
            f"put the file there, or pass --inception PATH or set {ENV_INCEPTION}"
        ) from None


def resolve_inception(mode: str = "clean", inception: str | Path | None = None, download: bool = True) -> Path:
    """The Inception weights file for ``mode``: explicit path, $MASKGIT_INCEPTION, clean-fid's cache, download.

    Fails with one line naming the file, its sha256 and where to put it; never waits on a network timeout.
    """
    spec = inception_file(mode)
    for value, origin in ((inception, "--inception"), (os.environ.get(ENV_INCEPTION) or None, ENV_INCEPTION)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise MaskgitError(f"{origin} {path}: no such file (expected {_describe(spec)})")
            return path
    cached = spec.cache_path()
    if cached.is_file():
        return cached
    if os.environ.get(ENV_NO_DOWNLOAD) == "1" or not download:
        why = f"downloads are off ({ENV_NO_DOWNLOAD}=1)"
    elif not _network_ok(spec.url):
        why = "no network to download it"
    else:
        _download(spec, cached)
        return cached
    raise MaskgitError(
        f"Inception weights for --mode {mode} not found and {why}: put {_describe(spec)} at {cached}, "
        f"or pass --inception PATH or set {ENV_INCEPTION}=PATH"
    )


def inception_available(mode: str = "clean", inception: str | Path | None = None) -> Path | None:
    """The weights file if it is on disk (never downloads): lets callers decide whether FID can run."""
    try:
        return resolve_inception(mode, inception, download=False)
    except MaskgitError:
        return None


def _wrong_file(path: Path, spec: InceptionFile, e: BaseException) -> MaskgitError:
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    other = INCEPTION_FILES["legacy_pytorch" if spec.mode == "clean" else "clean"]
    return MaskgitError(
        f"{path}: not a usable {spec.filename} for --mode {spec.mode} ({type(e).__name__}: {first}); "
        f"the file is wrong or corrupt (--mode {other.mode} uses {other.filename}) - expected {_describe(spec)}"
    )


def load_inception(mode: str, path: str | Path, device) -> Callable:
    """clean-fid's feature network for ``mode`` built from ``path``: float (B,3,299,299) in [0,255] -> (B,2048)."""
    import torch  # lazy: the module docstring says why

    spec = inception_file(mode)
    path = Path(path)
    if spec.sha256 is not None:
        size = path.stat().st_size
        digest = sha256_file(path) if size == spec.size else None
        if digest != spec.sha256:
            got = f"sha256 {digest}" if digest else f"{size:,} bytes, expected {spec.size:,}"
            raise MaskgitError(
                f"{path}: wrong or corrupt Inception weights for --mode {mode} ({got}); expected {_describe(spec)}"
            )
    if mode == "clean":
        from cleanfid.inception_torchscript import InceptionV3W

        try:
            # InceptionV3W loads <dir>/inception-2015-12-05.pt: point a temporary folder at files of another name.
            with tempfile.TemporaryDirectory() as tmp:
                folder = path.parent
                if path.name != spec.filename:
                    os.symlink(path.resolve(), Path(tmp) / spec.filename)
                    folder = Path(tmp)
                with warnings.catch_warnings():  # torch >= 2.10 deprecates torch.jit.load
                    warnings.simplefilter("ignore", FutureWarning)
                    net = InceptionV3W(str(folder), download=False, resize_inside=False)
            net = net.to(device).eval()
        except Exception as e:
            raise _wrong_file(path, spec, e) from None

        def clean_fn(x):
            return net(x)

        return clean_fn

    import cleanfid.inception_pytorch as ip  # lazy: the module docstring says why

    def load_local(url, *args, **kwargs):
        return torch.load(path, map_location="cpu", weights_only=True)

    original = ip.load_state_dict_from_url
    ip.load_state_dict_from_url = load_local  # fid_inception_v3() would otherwise download FID_WEIGHTS_URL
    try:
        with warnings.catch_warnings():  # torchvision's notes on clean-fid's `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            net = ip.InceptionV3(output_blocks=[3], resize_input=False).to(device).eval()
    except Exception as e:
        raise _wrong_file(path, spec, e) from None
    finally:
        ip.load_state_dict_from_url = original

    def legacy_fn(x):  # as cleanfid.features.feature_extractor("pytorch_inception")
        return net(x / 255)[0].squeeze(-1).squeeze(-1)

    return legacy_fn
