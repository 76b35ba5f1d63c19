"""The wallet client: encrypted keystores, node selection, local signing, job and result checks."""
