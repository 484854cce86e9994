"""Gateway resources: CoreWeave's Inference API ``/v1alpha1/inference/gateways``, served by polyrelay.

Each gateway is an isolated data plane (its own auth, routing strategy and zones) created, changed
and deleted at run time through the management API, kept in a store (SQLite or PostgreSQL) that
every replica applies. The pieces:

- ``spec``: a gateway's specification and status (the contract between the other pieces) and the
  ``Runtime`` protocol the data planes implement;
- ``schema``: the API's JSON parsed and validated into a spec, and rendered back; ``errors``: the
  API's error shape; ``lifecycle``: the status transitions and their conditions;
- ``store``: SQLite and PostgreSQL behind one interface, with migrations and a change feed;
- ``reconciler``: applies the store to this process's runtime and records each gateway's status;
- ``api`` and ``access``: the management API on its own port, viewer and admin roles, organizations;
- ``service``: the above assembled from ``Settings`` for ``create_app``; ``cli``: ``polyrelay gateways``;
- the runtime: one data plane per gateway, reached at ``/gateways/{id}/v1/...`` or on its extra hosts:
  ``runtime`` (``GatewayRuntime``: apply, swap, remove and drain; each plane built by
  ``gateway.plane.data_plane``, the default gateway's code), ``dispatch`` (the outermost ASGI piece
  that picks the plane), ``zones`` (the providers a gateway with zones may use), ``wandb`` (its W&B
  key check and usage reporter) and ``usage`` (the middleware handing each answer's usage to it).
"""
