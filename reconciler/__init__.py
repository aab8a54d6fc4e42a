"""reconciler: keep an Elasticsearch cluster's inference endpoints equal to a folder of YAML manifests."""

__version__ = "0.1.0"
