"""Regenerate ``keda-v1alpha1.json``: the JSON schemas of KEDA's ScaledObject and
TriggerAuthentication, taken from KEDA's published CRDs.

No PyPI package ships KEDA's CRD YAML; ``cloudcoil-models-keda`` ships pydantic models
generated from it (version 2.16.1.0 = KEDA v2.16.1, the newest that installs on Python 3.11).
This script turns those models back into JSON schema and makes every object with declared
properties strict (``additionalProperties: false``), as ``kubectl apply --validate=strict``
treats a structural CRD schema: an unknown or misspelt field is an error.

Not run by the tests (they read the vendored JSON); run it by hand in a throwaway venv::

    python -m venv /tmp/keda && /tmp/keda/bin/pip install cloudcoil-models-keda==2.16.1.0
    /tmp/keda/bin/python tests/data/schemas/generate_keda.py > tests/data/schemas/keda-v1alpha1.json
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any


def strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: strict(v) for k, v in node.items() if k not in ("title", "description")}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def main() -> None:
    from cloudcoil.models.keda import v1alpha1 as keda

    kinds = {
        name: strict(getattr(keda, name).model_json_schema(by_alias=True, mode="validation"))
        for name in ("ScaledObject", "TriggerAuthentication")
    }
    source = f"cloudcoil-models-keda {version('cloudcoil-models-keda')} (KEDA CRDs keda.sh/v1alpha1)"
    json.dump({"source": source, "kinds": kinds}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
