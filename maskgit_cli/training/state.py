"""Training states without pickle: every tensor (weights, optimizer moments, EMA, RNG states) is a safetensors
tensor, and the nesting around them (param groups, step, epoch, best score) is JSON in the file's metadata.

The file is written atomically (temporary name, then rename), so a crash while saving leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskgit_cli.errors import MaskgitError
from maskgit_cli.weights import read_metadata, read_tensors, save_tensors

STATE_FORMAT = 1

# ---------------------------------------------------------------------------------------------------------
# RNG states


def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU, every CUDA device, numpy, python) as tensors and JSON values."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": np_state[1].astype(np.int64),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    key = n["key"].numpy() if isinstance(n["key"], torch.Tensor) else np.asarray(n["key"])
    np.random.set_state(("MT19937", key.astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints without pickle: tensors in safetensors, the structure around them as JSON metadata


def pack_state(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """Replace every tensor in a nested dict/list/tuple by a reference and collect it in ``tensors``.

    Returns a JSON-able structure. Dicts become ``{"__dict__": [[key, value], ...]}`` so integer keys (the
    optimizer's per-parameter state) survive; tuples ``{"__tuple__": [...]}``; numpy arrays are stored as
    tensors. Anything else that is not a JSON scalar is a TypeError: nothing is ever pickled.
    """
    if isinstance(obj, torch.Tensor):
        name = path or "tensor"
        while name in tensors:  # keys containing '/' could collide; keep names unique
            name += "~"
        tensors[name] = obj
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        ref = pack_state(
            torch.from_numpy(np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "iu" else np.float64)),
            tensors,
            path,
        )
        return {"__ndarray__": ref["__tensor__"], "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint state {path or '/'}: key {k!r} is not a str or int")
            items.append([k, pack_state(v, tensors, f"{path}/{k}" if path else str(k))])
        return {"__dict__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [pack_state(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint state {path or '/'}: cannot store {type(obj).__name__} without pickle")


def unpack_state(structure: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`pack_state`."""
    if isinstance(structure, list):
        return [unpack_state(v, tensors) for v in structure]
    if isinstance(structure, dict):
        if "__tensor__" in structure:
            return tensors[structure["__tensor__"]]
        if "__ndarray__" in structure:
            return tensors[structure["__ndarray__"]].numpy().astype(structure["dtype"])
        if "__tuple__" in structure:
            return tuple(unpack_state(v, tensors) for v in structure["__tuple__"])
        return {k: unpack_state(v, tensors) for k, v in structure["__dict__"]}
    return structure


class Checkpointer:
    """Saves and loads a training state (nested dicts of tensors and JSON values) as one safetensors file.

    The file is written atomically (temporary name, then rename): a crash while saving leaves the previous
    checkpoint as it was. Metadata: ``kind=training-state``, ``structure`` (JSON) and ``step``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: dict[str, Any], step: int) -> None:
        tensors: dict[str, torch.Tensor] = {}
        structure = pack_state(state, tensors)
        seen: set[tuple[int, int]] = set()
        for name, t in tensors.items():  # safetensors refuses tensors that share memory: copy those
            t = t.detach()
            key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (0, id(t))
            tensors[name] = t.clone() if key in seen else t
            seen.add(key)
        save_tensors(
            self.path,
            tensors,
            {
                "kind": "training-state",
                "structure": json.dumps(structure),
                "state_format": str(STATE_FORMAT),
                "step": str(step),
            },
        )

    def load(self) -> dict[str, Any]:
        meta = read_metadata(self.path)
        if meta.get("kind") != "training-state" or "structure" not in meta:
            raise MaskgitError(f"{self.path}: not a maskgit training state file")
        if meta.get("state_format") != str(STATE_FORMAT):
            raise MaskgitError(
                f"{self.path}: training state format {meta.get('state_format')} is not supported "
                f"(this maskgit writes format {STATE_FORMAT})"
            )
        try:  # untrusted: a hostile or damaged structure is one line, whatever it holds
            return unpack_state(json.loads(meta["structure"]), read_tensors(self.path))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
            raise MaskgitError(f"{self.path}: training state structure is invalid ({type(e).__name__}: {e})") from None
