"""The gRPC front end: `inference.GRPCInferenceService` over the core `Server`."""
