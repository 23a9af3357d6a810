"""The HTTP gateway: aquadoggo's GraphQL API (and blobs) over the node's gRPC services."""
