"""X12 5010 files: the 837P claims we send and the 835 payments we send and read (docs/x12.md)."""
