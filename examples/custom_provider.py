"""Write, register and use a provider of your own — the same contract the cloud providers follow.

    python examples/custom_provider.py

The provider below "serves" a linear model from a dict; a real one would call its platform's SDK
inside these methods. It declares what it can do; asking for anything else raises
UnsupportedOperation with its reason, before any request. A fuller template — a fake service with
native errors, an error table, retries, every optional capability and the conformance harness —
is ``cloudserve.testing.memory``.
"""

from __future__ import annotations

from typing import Literal

import cloudserve as cs
from cloudserve.errors import NotFound
from cloudserve.resources import Endpoint, EndpointStatus, Prediction, Variant


class DictConfig(cs.ProviderConfig):
    provider: Literal["dict"] = "dict"
    weight: float = 2.0


class DictProvider(cs.Provider):
    name = "dict"
    config_cls = DictConfig
    capabilities = frozenset({cs.Capability.DEPLOY, cs.Capability.PREDICT})
    unsupported = {cs.Capability.BATCH: "this toy provider only serves online requests"}

    def __init__(self, config: DictConfig, *, target: str | None = None):
        super().__init__(config, target=target)
        self.endpoints: dict[str, cs.DeploySpec] = {}

    def _endpoint(self, spec: cs.DeploySpec) -> Endpoint:
        variant = Variant(
            name=spec.variant_name, model_name=spec.model.name, model_version=spec.model.version
        )
        return Endpoint(
            name=spec.endpoint, provider=self.name, status=EndpointStatus.READY, variants=[variant]
        )

    def deploy(self, spec, *, wait=True, timeout=None, progress=None):
        self.endpoints[spec.endpoint] = spec
        return self._endpoint(spec)

    def get_endpoint(self, name):
        if name not in self.endpoints:
            raise NotFound(f"endpoint {name} not found", provider=self.name)
        return self._endpoint(self.endpoints[name])

    def list_endpoints(self):
        return [self._endpoint(s) for s in self.endpoints.values()]

    def delete_endpoint(self, name, *, wait=True):
        self.endpoints.pop(name, None)

    def predict(self, endpoint, instances, *, variant=None, parameters=None):
        spec = self.get_endpoint(endpoint)
        outputs = [self.config.weight * sum(row) for row in instances]
        return Prediction(outputs=outputs, model_version=spec.variants[0].model_version)


def main() -> None:
    cs.register(DictProvider)
    with cs.connect(DictConfig(weight=0.5)) as client:
        model = cs.ModelSpec(name="toy", version="1", artifact="./unused", framework="custom")
        ep = client.deploy(model, "toy")
        print("deployed:", ep.name, ep.status.value, ep.traffic)
        print("predict:", ep.predict([[1, 2, 3], [4, 5, 6]]).outputs)
        try:
            client.batch_predict(model, "in.csv", "out/")
        except cs.UnsupportedOperation as exc:
            print("batch:", exc)
        client.delete_endpoint("toy")
        client.delete_endpoint("toy")  # idempotent
        print("endpoints left:", client.list_endpoints())


if __name__ == "__main__":
    main()
