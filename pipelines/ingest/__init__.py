"""The read side: input files and their formats (`formats`), the vectorised path (`vectorised`), the per-row
contract checks (`validate`) and the contract's vocabulary (`contract`), joined per file by `reader.read_validated`."""
