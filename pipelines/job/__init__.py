"""The Beam job itself: the graph, its DoFns and composite transforms, and the launcher
that builds and runs it."""
