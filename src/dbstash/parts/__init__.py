"""The parts a pipeline is made of: Source, Transform, Sink, the Pipeline and its relay."""
