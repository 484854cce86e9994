"""Gateway resources: CoreWeave's Inference API ``/v1alpha1/inference/gateways``, served by polyrelay.

Each gateway is an isolated data plane (its own auth, routing strategy and zones) created, changed
and deleted at run time through the management API, kept in a store (SQLite or PostgreSQL) that
every replica applies. The pieces:

- ``spec``: a gateway's specification and status, as the API shows them (the contract between the
  other pieces).
- the store, the reconciler (applies the store to this process, records status) and the management
  API (its own port, CoreWeave's error shape);
- the runtime: one data plane per gateway, reached at ``/gateways/{id}/v1/...`` or on its extra hosts.
"""
