"""Text in, ids out: reading and checking text, tokenizers, the id cache, BPTT windows."""
