"""The request pipeline all inbound APIs share (see ailb.pipeline.core)."""
