"""anyreach-listen: silent live listening to LiveKit voice conversations."""
