"""The parts of `scripts/build_assets.py`, by job: `vocabulary` and `grammar` (the corpus),
`prompts`, `tokenizer`, `training` and `report`."""
